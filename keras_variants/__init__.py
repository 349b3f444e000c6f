"""keras-variants: the Keras lecture's model variants as an orchestrated, tracked pipeline."""
