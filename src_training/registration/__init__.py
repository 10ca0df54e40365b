"""Registration: applying a trained model to pairs, batches and time series."""
