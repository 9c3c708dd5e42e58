"""Evaluation: everything after synthesis, on synthetic DES images and their real targets.

    columns          the registry of every per-image value: key, title, format, paper, direction
    metrics          per-image metrics (MSE, PSNR, SSIM, VIF, lesion and bright-pixel MAE, CNR)
    analyses         003's settings, 000's change and tissue CNR
    evaluate         baselines, per-image rows, summaries and their formats (arrays, no files)
    significance     Wilcoxon + Benjamini-Hochberg, Kruskal-Wallis, Pearson, fold tables
    evaluation_folder  an evaluation folder's CSVs written and read back, checked; folds pooled
    provenance       where an evaluation's numbers come from; the not-for-diagnosis wording
    reader_study     reader-study statistics with bootstrap CIs
    heatmap_panels   the error heatmap figures of an evaluation: PNG (300 dpi), SVG, PDF (matplotlib)
    panel_facts      where the breast lies, pixel spacing, side and view for those figures
    figures, html_page, report, gallery   the self-contained HTML report, its figures and its per-case gallery
    run              `virtual-contrast evaluate`: a model on a manifest split, written as a folder

It imports data, checkpoints and synthesis (to run a model), never train nor compare.
"""
