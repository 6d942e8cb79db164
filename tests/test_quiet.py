"""Start-up noise: the patterns hide the messages Lightning really prints, and only those."""
import re
import warnings

import pytest

from modaltune.quiet import NOISE


@pytest.mark.parametrize("message", [
    "Found 47 module(s) in eval mode at the start of training. This may lead to unexpected behavior during training.",
    "Found 2 modules in eval mode at the start of training.",
    "`weights_only` was not set, defaulting to `False`.",
])
def test_lightning_noise_is_matched(message):
    assert any(re.match(p, message) for p in NOISE)


def test_real_warnings_are_not_matched():
    for message in ("loss is NaN at step 3", "Found NaN in module(s) output", "unknown patch encoder 'x'"):
        assert not any(re.match(p, message) for p in NOISE), message


def test_engine_context_hides_the_eval_mode_warning_in_any_process():
    """fit() wraps Lightning in _quiet_lightning, so a benchmark worker (which never ran the CLI's
    quiet_startup) does not print the frozen backbone's eval-mode warning either."""
    from modaltune.training.trainer import _quiet_lightning

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with _quiet_lightning():
            warnings.warn("Found 47 module(s) in eval mode at the start of training.", UserWarning, stacklevel=1)
            warnings.warn("a real problem", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["a real problem"]
