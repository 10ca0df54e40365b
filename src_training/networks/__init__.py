"""Networks: U-Net, registration network, feature extractor, model files.

The 2D/3D U-Net, the registration network, the segmentation/autoencoder feature
extractor and its task loss, and the safe model file format.
"""
