"""Request limits are written once (:mod:`keras_variants.serving.limits`): the model's
checks, the server's checks and defaults, ``variants serve``'s option defaults and the
scoring's per-row checks all read them. Quick: no model, no server process."""

from __future__ import annotations

import base64
import inspect
import json

import pytest

from keras_variants.serving import limits
from keras_variants.serving.http_edge import ApiError, parse_request


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (0, True),
        (1, True),
        (limits.MAX_MC_SAMPLES, True),
        (limits.MAX_MC_SAMPLES + 1, False),
        (-1, False),
        (True, False),  # JSON true is not a number of passes
        (2.0, False),
        ("3", False),
        (None, False),
    ],
)
def test_mc_samples_allowed(value: object, allowed: bool) -> None:
    assert limits.mc_samples_allowed(value) is allowed


@pytest.mark.parametrize("samples", [limits.MAX_MC_SAMPLES + 1, True, "3"])
def test_the_server_refuses_mc_samples_in_the_models_words(samples: object) -> None:
    body = json.dumps({"inputs": ["a"], "params": {"mc_samples": samples}}).encode()
    with pytest.raises(ApiError, match=f"from 0 to {limits.MAX_MC_SAMPLES}$"):
        parse_request(body)
    within = {"inputs": ["a"], "params": {"mc_samples": limits.MAX_MC_SAMPLES}}
    assert parse_request(json.dumps(within).encode()) == (["a"], within["params"])


def test_the_largest_image_file_scored_fits_the_served_limit_once_encoded() -> None:
    assert len(base64.b64encode(b"\0" * limits.MAX_IMAGE_BYTES)) == limits.MAX_IMAGE_CHARS
    assert len(base64.b64encode(b"\0" * (limits.MAX_IMAGE_BYTES + 1))) > limits.MAX_IMAGE_CHARS


def test_variants_serve_starts_from_the_servers_defaults() -> None:
    from keras_variants.cli.serve import serve

    options = {name: p.default for name, p in inspect.signature(serve).parameters.items()}
    default = limits.Limits()
    assert options["max_request_mb"] * 2**20 == default.max_request_bytes
    assert options["max_cost"] == default.max_cost
    assert options["timeout"] == default.timeout_s
    assert options["max_concurrent"] is None and options["max_queue"] is None  # the cores
    assert default.max_concurrent == default.max_queue == limits.cores()
