"""Model builders: pure Keras, one function per architecture.

Every random choice (initializers, dropout masks) gets its own seed derived from the run's
seed, so a variant is reproducible even while other variants train in parallel threads.
The numeric precision is set per layer (a Keras dtype policy), never process-wide: hidden
layers compute in ``precision``, the output layer always in float32.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from keras_variants.config.variants import DATASETS, VariantConfig


def build_dense(variant: VariantConfig, seed: int, precision: str = "float32") -> keras.Sequential:
    """Dense hidden layers (relu), optional l2 on their kernels and dropout after each."""
    seeds = iter(range(seed, seed + 1_000))
    regularizer = keras.regularizers.l2(variant.l2) if variant.l2 else None
    model = keras.Sequential([keras.Input(variant.input_shape)], name=variant.name)
    for units in variant.hidden_units:
        model.add(
            layers.Dense(
                units,
                activation="relu",
                kernel_regularizer=regularizer,
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                dtype=precision,
            )
        )
        if variant.dropout:
            model.add(layers.Dropout(variant.dropout, seed=next(seeds), dtype=precision))
    model.add(_output_layer(variant, next(seeds)))
    return model


def build_cnn(variant: VariantConfig, seed: int, precision: str = "float32") -> keras.Sequential:
    """Conv2D(3x3, relu) blocks with 2x2 max pooling between them, then dense layers; with
    ``variant.dropout``, a Dropout layer after Flatten and after each dense layer."""
    seeds = iter(range(seed, seed + 1_000))
    model = keras.Sequential([keras.Input(variant.input_shape)], name=variant.name)
    for i, filters in enumerate(variant.conv_filters):
        if i:
            model.add(layers.MaxPooling2D(2, dtype=precision))
        model.add(
            layers.Conv2D(
                filters,
                3,
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                dtype=precision,
            )
        )
    model.add(layers.Flatten(dtype=precision))
    if variant.dropout:
        model.add(layers.Dropout(variant.dropout, seed=next(seeds), dtype=precision))
    for units in variant.hidden_units:
        model.add(
            layers.Dense(
                units,
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                dtype=precision,
            )
        )
        if variant.dropout:
            model.add(layers.Dropout(variant.dropout, seed=next(seeds), dtype=precision))
    model.add(_output_layer(variant, next(seeds)))
    return model


def _output_layer(variant: VariantConfig, seed: int) -> layers.Dense:
    head = DATASETS[variant.dataset]
    return layers.Dense(
        head.output_units,
        activation=head.output_activation,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        dtype="float32",  # probabilities and the loss in full precision, whatever the rest
    )


BUILDERS: dict[str, Callable[[VariantConfig, int, str], keras.Model]] = {
    "dense": build_dense,
    "cnn": build_cnn,
}


def build_model(
    variant: VariantConfig, seed: int, steps_per_execution: int = 1, precision: str = "float32"
) -> keras.Model:
    """The compiled model of ``variant``: its builder, the optimizer, its loss and accuracy.

    ``steps_per_execution`` runs that many batches per compiled call: the same training
    steps with less Python between them.
    """
    model = BUILDERS[variant.architecture](variant, seed, precision)
    optimizer = keras.optimizers.get(
        {"class_name": variant.optimizer, "config": {"learning_rate": variant.learning_rate}}
    )
    model.compile(
        optimizer=optimizer,
        loss=DATASETS[variant.dataset].loss,
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model
