"""The generic name registry (modaltune.registry) and its users: duplicates refused, did-you-mean."""
from __future__ import annotations

import pytest

from modaltune.errors import ConfigError, InputError
from modaltune.registry import Registry


def test_register_get_names_and_decorator():
    reg = Registry("widget")
    reg.register("b", 2, colour="red")

    @reg.register("a")
    def make_a():
        return 1

    assert reg.get("a") is make_a and reg.get("b") == 2
    assert reg.names() == ["a", "b"] and list(reg) == ["b", "a"]  # names sorted, iteration in registration order
    assert dict(reg.items()) == {"b": 2, "a": make_a}
    assert reg.meta("b") == {"colour": "red"} and reg.meta("a") == {}
    assert "a" in reg and "c" not in reg and len(reg) == 2


def test_duplicate_names_are_refused_unless_replace():
    reg = Registry("widget")
    reg.register("a", 1)
    reg.register("a", 1)  # the same object again is a no-op
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.register("a", 2)
    assert reg.get("a") == 1
    reg.register("a", 2, replace=True)
    assert reg.get("a") == 2


def test_unknown_name_is_one_line_with_did_you_mean_and_the_registry_error_class():
    reg = Registry("widget", error=InputError, where="cfg.widget")
    reg.register("gigapath", 1)
    reg.register("titan", 2)
    with pytest.raises(InputError) as ei:
        reg.get("gigapth")
    msg = str(ei.value)
    assert msg == "cfg.widget: unknown widget 'gigapth' (fix: did you mean 'gigapath'? known: gigapath, titan)"
    with pytest.raises(InputError, match=r"unknown widget 'zzz' \(fix: known: gigapath, titan\)"):
        reg.get("zzz")
    assert reg.get("zzz", None) is None


def test_normalize_applies_to_lookups():
    reg = Registry("encoder", normalize=lambda s: s.strip().lower().replace("-", "_"))
    reg.register("conch_v15", 1)
    assert reg.get("CONCH-v15") == 1 and "Conch_V15" in reg


def test_the_four_registries_refuse_duplicates_and_suggest_names():
    from modaltune.encoders.slide.registry import create_slide_encoder, register_slide_encoder
    from modaltune.evaluation.metrics import get_metric
    from modaltune.methods.registry import get_method, register_method
    from modaltune.preprocess.encoders.registry import get_patch_encoder_spec

    with pytest.raises(ValueError, match="registered twice"):
        register_slide_encoder("abmil", object)
    with pytest.raises(ConfigError, match="did you mean 'small_transformer'"):
        create_slide_encoder("small_transfomer")
    with pytest.raises(InputError, match="did you mean 'mean_pool'"):
        get_method("mean_pol")  # loads every method module
    with pytest.raises(ValueError, match="registered twice"):
        register_method("abmil")(lambda info, **p: None)
    with pytest.raises(InputError, match="unknown metric 'c_indx'.*did you mean 'c_index'"):
        get_metric("c_indx")
    with pytest.raises(ConfigError, match="unknown patch encoder 'unii'.*did you mean 'uni'"):
        get_patch_encoder_spec("unii")
