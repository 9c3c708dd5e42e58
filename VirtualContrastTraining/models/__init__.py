"""Networks, built by name from a config (`define_G`, `define_D`), as in pytorch-CycleGAN-and-pix2pix."""
