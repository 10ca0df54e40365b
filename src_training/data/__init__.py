"""Data: images, datasets, label mapping, pairs, augmentation and samples.

Reading and writing files, dataset folders and their layouts, Cell Tracking Challenge
sequences, the synthetic sample, pair sampling and augmentation.
"""
