"""What the widgets' controls and results say when the pointer rests on them.

Every control of every widget has a tooltip that says what it does and in which unit
(pixels, steps, per step); the texts are here so that the widget modules stay about
their behaviour, and so that the same control reads the same in every widget.
"""

FIXED_TIP = "The image that stays put; results lie on its grid (its pixels, scale and translate)"
MOVING_TIP = (
    "The image that is warped onto the fixed one; the same stack as fixed registers its frames"
)
LABELS_TIP = "Optional label ids: warped with the field, and Dice is scored before and after"
GRID_TIP = "Lines of the fixed grid drawn where they sample the moving image (Shapes in 2D)"
JACOBIAN_TIP = (
    "det J of the transformation (1 = volume kept, < 1 compressed, > 1 stretched; colour bar "
    "from 0 to 2) and a layer marking the folds, where det J <= 0"
)
VECTORS_TIP = (
    "The displacement at every grid-spacing pixel, as arrows; lengths are scaled up (the "
    "factor is in the layer name) when the mean displacement is under a few pixels"
)
JACOBIAN_LEGEND = (
    "Jacobian: colour bar 0 (pink, compressed) to 2 (green, stretched), 1 = unchanged; "
    "folds (det J <= 0) in red"
)
REGISTER_TIP = "Register the moving layer onto the fixed one (the button becomes Stop)"
CHECKER_TIP = "Tiles of the fixed and the warped moving image in turn: edges should continue"
RESULTS_TIP = (
    "Dice: overlap of the warped moving labels with the fixed labels (0 to 1, before -> after); "
    "% folding: share of pixels with det J <= 0; sdlogj: standard deviation of log det J "
    "(0 for a rigid shift, higher is less smooth); wall time: from pressing Register to the "
    "layers shown, beside the registration's own compute time"
)
FIELD_TIPS = {
    "load": "Read a field file (.npz, .npy) to apply it to other layers",
    "apply": "Warp (images, labels) or move (points, shapes, tracks) the layer with the field",
}
COMPARE_BUTTON_TIPS = (
    "Add registration model files (.pt) as rows, ticked",
    "Remove the selected model files and optimisations from the list",
    "Add a row that optimises the field for this pair with the metric and iterations above",
    "Add a row per selected model: its field refined by the optimisation above",
)
FOLDER_TIP = "A dataset folder (images/ and labels/), used instead of the layers when set"
LAYERS_TIP = (
    "Two or more 2D images, or two or more 3D volumes, of one shape: stacked as frames for "
    "you (in this order) and used instead of the layer above; their labels come along when "
    "each has a labels layer named after it"
)
STEPS_TIP = "Optimisation steps (one batch each); more steps train longer"
CROP_TIP = "Side of the random square (or cubic) training crops, in pixels"
BATCH_TIP = "Pairs (or images) per step; lower it when the device runs out of memory"
LR_TIP = "Adam's learning rate: the size of each step's weight update, per step"
CHANNELS_TIP = (
    "U-Net feature channels per level, comma separated (e.g. 16,32,64): more is slower and "
    "uses more memory"
)
TRAIN_TIP = "Start training in the background (the button becomes Stop, which keeps the model)"
SAVE_TIP = "Write the trained model to a .pt file (it stays usable in this viewer without saving)"
IMAGE_TIP = "The image (or stack of frames) to learn features from"
STACK_TIP = (
    "A 2D+t or 3D+t stack: the model learns to register its frames onto each other (up to "
    "2 frames apart)"
)
VOLUME_TIP = "A 3D layer is one volume (3D features) rather than frames of a 2D+t stack"
KIND_TIP = (
    "segmentation learns the painted classes (needs labels); autoencoder needs none; "
    "self-supervised needs none either and learns to denoise (for deepsim-ae)"
)
METRIC_TIP = "The similarity the model learns to maximise (deepsim needs a feature extractor)"
LAMBDA_TIP = (
    "λ, the weight of the smoothness regulariser against the similarity (no unit): higher "
    "gives smoother, smaller displacements"
)
EXTRACTOR_FILE_TIP = "A feature extractor file (.pt) saved by 'Train feature extractor'"
METHOD_TIP = (
    "model: a trained registration model; optimise: no model, the field is optimised for "
    "this pair with a metric; model + refine: the model's field, then optimised"
)
WEIGHTS_TIP = "torchvision's ImageNet VGG16 weights file, for the vgg metric"
CHECKPOINT_TIP = (
    "Recompute the network's stages in the backward pass: less memory for about one more "
    "forward pass per step"
)


def plot_tip(x_label: str, score_label: str, by_loss: bool) -> str:
    """Return the loss plot's tooltip: what each colour is and which way is better."""
    tip = f"Blue: the loss per {x_label} (left axis, lower is better)"
    if by_loss:
        tip += (
            f". Orange: the {score_label} (right axis, lower is better): the validation "
            "frames have no labels, so no Dice is scored"
        )
    elif score_label:
        tip += (
            f". Orange: the {score_label} (right axis, higher is better); dashed: the "
            "identity's (no registration), which the model has to beat"
        )
    return tip + ". Right-click > Export… saves the plot."
