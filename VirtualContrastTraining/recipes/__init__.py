"""Recipes: networks + losses + optimisers of one published method, one class each."""
