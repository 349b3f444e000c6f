"""IMDb's models trained on word-id sets: the same model and the same math as on multi-hot
rows, without the multiplications by zero.

A multi-hot row of 10,000 columns marks the ~130 distinct words of a review, so the first
``Dense`` layer's ``x @ kernel + bias`` is the sum of the kernel rows of the words present,
plus the bias. :class:`WordSetDense` computes exactly that from each review's set of word
ids (:func:`keras_variants.data.preprocessing.word_sets`), given as the multi-hot rows in
sparse form (1.0 at each word, :func:`~keras_variants.data.preprocessing.encode_word_set_batch`):
TensorFlow's sparse-dense product adds up those kernel rows (1.0 times a row is the row).
Its kernel gradient is the multi-hot gradient ``x.T @ upstream``, dense (a row per word of
the vocabulary, zero for words absent from the batch), so the optimizer updates every row
as it would for the ``Dense`` layer; the l2 penalty is the ``Dense`` kernel's own.

(Keras's ``Dense`` on a sparse input computes the same sum with an embedding lookup whose
gradient is a list of rows, measured slower than the multi-hot product; the sparse-dense
product here took about a third of its time per step on one thread, docs/performance.md.)

:func:`word_set_twin` wraps a built ``Dense`` model: the twin's first layer reads the
``Dense`` layer's own kernel and bias, and every later layer (dropout and its seeds
included) is the same layer object, trained by the same optimizer. Training the twin trains
the lecture's ``Dense`` model in place: that model is the one evaluated, registered and
served, on multi-hot rows, unchanged. The twin is never saved.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_variants.config.variants import DATASETS, VariantConfig


class WordSetDense(keras.layers.Layer):
    """``dense`` evaluated on word-id sets, given as sparse multi-hot rows:
    ``activation(sum of the kernel rows of each row's words + bias)``, with ``dense``'s own
    variables, dtype policy and kernel regularizer."""

    def __init__(self, dense: keras.layers.Dense) -> None:
        super().__init__(dtype=dense.dtype_policy, name=f"{dense.name}_on_word_sets")
        self.dense = dense  # tracked: its kernel and bias are this layer's weights

    def build(self, input_shape: tuple) -> None:
        if not self.dense.built:
            raise ValueError("WordSetDense wraps a built Dense layer (it owns no weights)")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.dense.units)

    def call(self, words: tf.SparseTensor) -> tf.Tensor:
        words = tf.SparseTensor(
            words.indices, tf.cast(words.values, self.compute_dtype), words.dense_shape
        )

        @tf.custom_gradient
        def rows_of_words_summed(kernel: tf.Tensor) -> tuple[tf.Tensor, object]:
            def multi_hot_gradient(upstream: tf.Tensor) -> tf.Tensor:
                return tf.sparse.sparse_dense_matmul(words, upstream, adjoint_a=True)

            return tf.sparse.sparse_dense_matmul(words, kernel), multi_hot_gradient

        kernel = tf.cast(tf.convert_to_tensor(self.dense.kernel), self.compute_dtype)
        bias = tf.cast(tf.convert_to_tensor(self.dense.bias), self.compute_dtype)
        return self.dense.activation(rows_of_words_summed(kernel) + bias)


def trains_on_word_sets(variant: VariantConfig) -> bool:
    """Whether ``variant`` trains on word-id sets: a multi-hot input into a dense model."""
    return variant.input_encoding == "multi_hot" and variant.architecture == "dense"


def word_set_twin(model: keras.Sequential, variant: VariantConfig) -> keras.Sequential:
    """A model of word-id sets (sparse multi-hot rows) sharing every variable, layer and the
    optimizer of ``model`` (compiled, its first layer a ``Dense`` on multi-hot rows):
    fitting it fits ``model``."""
    first, *rest = model.layers
    if not isinstance(first, keras.layers.Dense):
        raise TypeError(f"{variant.name}: the first layer is {type(first).__name__}, not Dense")
    twin = keras.Sequential(
        [keras.Input(shape=model.input_shape[1:], sparse=True), WordSetDense(first), *rest],
        name=f"{model.name}_on_word_sets",
    )
    twin.compile(
        optimizer=model.optimizer,
        loss=DATASETS[variant.dataset].loss,
        metrics=["accuracy"],
        steps_per_execution=model.steps_per_execution,
    )
    return twin
