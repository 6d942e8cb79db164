"""Helpers for the slide-encoder tests: the reference pack in ``<shared>/reference`` and our values
under the reference's own field names.

``shared`` is located as in tests/conftest.py: ``$MODALTUNE_SHARED`` or ``<repo>/../shared``.
Run ``python tests/encoders/slide_refs.py`` to print the max abs difference of every reference
field (the numbers quoted in docs/slide_encoders.md).
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from _scripts import load_script

REPO = Path(__file__).resolve().parents[2]

GIGAPATH_REDUCED = "ref_gigapath_p37_reduced_20x.pt"
GIGAPATH_FULL = "ref_gigapath_p300_full_20x.pt"
TITAN_REDUCED = "ref_titan_p37_reduced_20x.pt"
TITAN_FULL = "ref_titan_p300_full_20x.pt"


def ref_dir() -> Path:
    """``$MODALTUNE_SHARED/reference`` if the variable is set, else ``<repo>/../shared/reference``."""
    env = os.environ.get("MODALTUNE_SHARED")
    return (Path(env) if env else REPO.parent / "shared") / "reference"


def _need_refs() -> None:
    d = ref_dir()
    if not (d / "recipe.py").exists():
        pytest.skip(
            f"slide-encoder reference pack not found at {d} "
            "(set MODALTUNE_SHARED to the shared folder or put shared/ beside the repository)"
        )


@functools.cache
def _recipe_module():
    return load_script(ref_dir() / "recipe.py", "_modaltune_ref_recipe")


@functools.cache
def load_ref(name: str) -> dict:
    _need_refs()
    return torch.load(ref_dir() / name, weights_only=True)


def recipe_state_dict(keys_json: str, base_seed: int) -> dict[str, torch.Tensor]:
    """Rebuild a full-size synthetic state dict from the official key list (see recipe.py)."""
    _need_refs()
    rec = _recipe_module()
    keys = json.loads((ref_dir() / keys_json).read_text())["state_dict"]
    return {e["name"]: rec.recipe_tensor(e["name"], e["shape"], base_seed + i) for i, e in enumerate(keys)}


def global_sha256(sd: dict[str, torch.Tensor]) -> str:
    return _recipe_module().sd_checksums(sd)["global_sha256"]


def maxdiff(a: Any, b: Any) -> float:
    """Max abs difference of two tensors, or of two equally long lists/dicts of tensors."""
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), (sorted(a), sorted(b))
        return max(maxdiff(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        return max(maxdiff(x, y) for x, y in zip(a, b))
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return float((a.double() - b.double()).abs().max())


# -- our values under the reference field names ------------------------------------------------
def gigapath_fields(m, x: torch.Tensor, c: torch.Tensor, tile_size: float | None = None, internals: bool = True) -> dict[str, Any]:
    """Every GigaPath reference field computed with our encoder ``m`` (eval, dtype of ``m``).

    One layer-by-layer pass gives the raw states; the pooled outputs are taken from those states
    (``pool`` / ``pool_raw``), the layer-0 internals from :func:`dilated_attention` on layer 0's
    projections. ``internals=False`` skips the layer-0 branch recomputation.
    """
    from modaltune.encoders.slide.gigapath import dilated_attention

    x = x.to(m.cls_token.dtype)
    out: dict[str, Any] = {}
    with torch.no_grad():
        state = m.embed(x, c, tile_size=tile_size)
        out["pos_index"] = m.pos_index(c, tile_size)
        out["embed_input"] = state.tokens
        if internals:
            layer = m.encoder.layers[0]
            sa = layer.self_attn
            h = layer.self_attn_layer_norm(state.tokens)
            B, T, D = h.shape
            q, k, v = (p(h).view(B, T, sa.num_heads, sa.head_dim) for p in (sa.q_proj, sa.k_proj, sa.v_proj))
            merged, branches = dilated_attention(q, k, v, sa.segment_lengths, sa.dilated_ratios, return_branches=True)
            out["l0_merged_attn"] = merged.reshape(B, T, D)
            out["l0_branch_out"] = [b[0] for b in branches]
            out["l0_branch_lse"] = [b[1] for b in branches]
        states = [state]
        for i in range(m.num_layers):
            states.append(m.run_layers(states[-1], i, i + 1))
        out["encoder_states_raw"] = torch.stack([s.tokens for s in states])
        out["encoder_out_after_encoder_layer_norm"] = m.encoder.layer_norm(states[-1].tokens)
        out["cls_default"] = m.pool(states[-1], global_pool=False)
        out["gp_default"] = m.pool(states[-1], global_pool=True)
        out["cls_all_layer_embed"] = torch.stack([m.pool_raw(s, False) for s in states])
        out["gp_all_layer_embed"] = torch.stack([m.pool_raw(s, True) for s in states])
        # TRIDENT's output is entry 11 (only defined for the 12-layer model; None in the reduced file)
        out["trident_gigapath_output"] = out["gp_all_layer_embed"][11] if m.num_layers >= 12 else None
    return out


def titan_fields(m, x: torch.Tensor, c: torch.Tensor, patch_size_level0: int, on_collision: str | None = None) -> dict[str, Any]:
    """Every TITAN reference field computed with our encoder ``m`` (batch of one slide).

    ``bg_mask [1, H, W]`` (True = foreground cell) is rebuilt from our token cells and grid shape;
    ``alibi_bias [1, heads, T, T]`` is the bias our streamed attention uses, built for the whole
    sequence at once.
    """
    from modaltune.layers.alibi import alibi_bias_tile

    x = x.to(m.cls_token.dtype)
    out: dict[str, Any] = {}
    with torch.no_grad():
        s = m.embed(x, c, patch_size_level0=patch_size_level0, on_collision=on_collision)
        H, W = s.context["grid_shape"][0]
        grid = s.context["grid"][0]
        cells = grid[1:, 0] * W + grid[1:, 1]
        bg = torch.zeros(H * W, dtype=torch.bool)
        bg[cells] = True
        out["grid_shape_HW"] = (H, W)
        out["token_cell_index"] = cells
        out["bg_mask"] = bg.view(1, H, W)
        cls = torch.arange(len(grid)) < s.num_prefix
        out["alibi_bias"] = alibi_bias_tile(grid, grid, m.slopes, cls, cls, dtype=s.tokens.dtype)[None]
        out["blocks_input"] = s.tokens
        out["block_outputs"] = {}
        for i in range(m.num_layers):
            s = m.run_layers(s, i, i + 1)
            out["block_outputs"][i] = s.tokens
        out["tokens_final"] = m.norm(s.tokens)
        out["slide_embedding"] = m.pool(s)
        out["slide_embedding_proj"] = m.pool(s, proj=True)
        out["attn_pool_tokens"] = m.pool_tokens(s)
    return out


EXACT_FIELDS = {"pos_index", "token_cell_index", "bg_mask", "grid_shape_HW"}


def compare_fields(ours: dict[str, Any], ref: dict[str, Any]) -> dict[str, float]:
    """Max abs difference per reference field (0.0 for the exact integer/bool fields, which must be
    equal: an AssertionError otherwise). Every field of ``ref`` must be present in ``ours``."""
    missing = sorted(set(ref) - set(ours))
    assert not missing, f"reference fields not computed: {missing}"
    diffs: dict[str, float] = {}
    for key, want in ref.items():
        got = ours[key]
        if want is None:
            assert got is None, key
            continue
        if key in EXACT_FIELDS:
            ok = tuple(got) == tuple(want) if key == "grid_shape_HW" else torch.equal(got, want)
            assert ok, f"{key} differs from the reference"
            diffs[key] = 0.0
        else:
            diffs[key] = maxdiff(got, want)
    return diffs


def _report() -> None:  # pragma: no cover - measurement script
    import time

    from modaltune.encoders.slide import GigaPathSlideEncoder, TitanSlideEncoder

    def gp_reduced():
        r = load_ref(GIGAPATH_REDUCED)
        m = GigaPathSlideEncoder(embed_dim=256, depth=8, num_heads=16, ffn_dim=1024).eval()
        m.load_state_dict(r["state_dict"])
        return m, r

    def ti_reduced():
        r = load_ref(TITAN_REDUCED)
        m = TitanSlideEncoder(embed_dim=192).eval()
        m.load_state_dict(r["state_dict"])
        return m, r

    def gp_full():
        r = load_ref(GIGAPATH_FULL)
        m = GigaPathSlideEncoder().eval()
        m.load_state_dict(recipe_state_dict("gigapath_slide_encoder_keys.json", r["state_dict_recipe"]["base_seed"]))
        return m, r

    def ti_full():
        r = load_ref(TITAN_FULL)
        m = TitanSlideEncoder().eval()
        m.load_state_dict(recipe_state_dict("titan_vision_encoder_keys.json", r["state_dict_recipe"]["base_seed"]))
        return m, r

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for label, make, kind in [("GigaPath reduced", gp_reduced, "gp"), ("GigaPath full", gp_full, "gp"),
                              ("TITAN reduced", ti_reduced, "ti"), ("TITAN full", ti_full, "ti")]:
        m, r = make()
        inp = r["inputs"]
        for case, o in r["outputs"].items():
            mm = m.double() if "fp64" in case else m.float()
            t0 = time.perf_counter()
            if kind == "gp":
                x, c = (inp["features_batch2"], inp["coords_batch2"]) if "batch2" in case else (inp["features"], inp["coords"])
                ours = gigapath_fields(mm, x, c, inp["tile_size"], internals="l0_branch_out" in o)
            else:
                c = inp["coords_duplicate_cell_case"] if "duplicate" in case else inp["coords"]
                ours = titan_fields(mm, inp["features"], c, inp["patch_size_lv0"], on_collision="sum" if "duplicate" in case else None)
            d = compare_fields(ours, o)
            print(f"\n{label} / {case} ({time.perf_counter() - t0:.1f}s)")
            for k, v in d.items():
                print(f"  {k:40s} {v:.3g}")


if __name__ == "__main__":  # pragma: no cover
    _report()
