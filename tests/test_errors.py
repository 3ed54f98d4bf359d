"""Input warnings: printed as messages by the command line, and facts said once per process."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from modaltune.errors import InputWarning, forget_said_warnings, warn_input_once


def test_input_warnings_print_as_messages_without_source_lines():
    # A fresh interpreter: pytest records warnings itself, so the real printing path is only seen outside it.
    code = (
        "import warnings\n"
        "from modaltune.errors import install_warning_format, warn_input\n"
        "install_warning_format()\n"
        "warnings.simplefilter('always')\n"
        "warn_input('bad value', file='x.tsv', fix='fix it')\n"
        "warnings.warn('other', UserWarning)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "warning: bad value | file: x.tsv | fix: fix it\n" in err
    assert "InputWarning" not in err and "warn_input(" not in err       # no class name, no source line
    assert "UserWarning: other" in err                                   # other warnings keep their form


def test_warn_input_once_says_a_fact_once():
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert warn_input_once("k", "said") is not None
        with warnings.catch_warnings():      # a new filter context (one per benchmark cell) does not repeat it
            warnings.simplefilter("always")
            assert warn_input_once("k", "said") is None
    assert [str(w.message) for w in rec] == ["said"]
    forget_said_warnings()
    with pytest.warns(InputWarning, match="said"):
        warn_input_once("k", "said")


def test_random_slide_encoder_is_warned_once():
    from modaltune.encoders.slide.factory import build_slide_encoder

    tiny = {"dim": 32, "depth": 2, "heads": 4, "ffn_dim": 64}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        build_slide_encoder("small", 8, tiny)
        build_slide_encoder("small", 8, tiny)
    assert sum("randomly initialised" in str(w.message) for w in rec) == 1
