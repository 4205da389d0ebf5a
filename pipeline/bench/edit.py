"""Edit benchmark: how far each direction moves its attribute, what else it moves, and whether
the face stays the same person, on random faces and on encoded held-out photos.

For every attribute direction it edits each face by -2 and +2 standard deviations (age also by
+3) and scores the results with :mod:`pipeline.faces.attributes`: the target's change per standard
deviation (years for age, degrees for pose, probabilities for gender and emotions, ratios for
the landmark scores), the dlib identity distance to the unedited face, and the change of the
other attributes (leakage). Conditioned edits (e.g. age with gender held) measure how much of
the leakage into the held attribute conditioning removes: the fixed pairs of ``CONDITIONED``
and each edit held against the attribute it drags along most; the goal averages the pairs
whose leakage is material (at least ``MATERIAL_LEAKAGE`` standard deviations).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..faces.attributes import IDENTITY_SAME
from ..latent.directions import Direction
from ..latent.edit import apply_edits
from ..models.generator import Generator
from ..models.mini_xception import EMOTIONS
from ..models.render import from_uint8, render
from ..training.decorrelation import CORRECT_ABOVE, FIT_FACES, FIT_SEED, LEAK_GOAL, ROW_FACES
from ..training.directions import LAYER_KEEP, Progress, score_images
from ..training.gradient_directions import IDENTITY_SLACK

STRENGTHS = (-2.0, 2.0)
AGE_GOAL_STRENGTH = 3.0
LEAKAGE_INTO = ("age", "gender", "smile", "happy", "mouth_open", "yaw", "pitch")
CONDITIONED = (("age", "gender"), ("gender", "age"), ("smile", "mouth_open"), ("happy", "mouth_open"))
MATERIAL_LEAKAGE = 0.1  # standard deviations of the held attribute: less is not worth cutting (nor measurable)
GRID_STRENGTHS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
GRID_ROWS = 8
GOALS = {"age_plus3_years": 15.0, "happy_plus2_probability": 0.4, "identity_kept_share": 0.7, "conditioning_cut": 0.5,
         "every_emotion_plus2_probability": 0.3}  # fmt: skip

Log = Callable[[str], None]
Setting = tuple[str, float, tuple[str, ...]]  # (direction, strength, directions held)


def _measure(G: Generator, wplus: torch.Tensor, progress: Progress, done: int,
             identity: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray | None]:  # fmt: skip
    """Scores by name and (n, 128) identity descriptors of the rendered codes (most of the cost)."""
    scores, records = score_images(render(G, wplus), identity=identity)
    progress(done + len(wplus))
    return scores, np.stack([r.identity for r in records]) if identity else None


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def bench_codes(G: Generator, directions: Mapping[str, Direction], codes: torch.Tensor, log: Log) -> dict:
    """The measures on W+ ``codes`` (n, n_latent, dim) for every attribute direction."""
    # the attributes people edit most (each costs two edited renders a face, scored with identity)
    targets = [k for k in LEAKAGE_INTO if k in directions and directions[k].kind == "attribute"]
    settings: list[Setting] = [(t, s, ()) for t in targets for s in STRENGTHS]
    if "age" in targets:
        settings.append(("age", AGE_GOAL_STRENGTH, ()))
    # at most two conditioned edits per target follow: the fixed pairs and its worst leak
    progress = Progress("edit bench", len(codes) * (len(settings) + 1 + 2 * len(targets)), log)
    base, base_id = _measure(G, codes, progress, 0)
    spread = {k: float(v.std()) for k, v in base.items()}
    changes: dict[Setting, dict[str, np.ndarray]] = {}
    identity: dict[Setting, np.ndarray] = {}

    def run(batch: list[Setting]) -> None:
        for name, strength, held in batch:
            edited = apply_edits(codes, directions, {name: strength}, held)
            # identity is measured where the goal counts it: the plain +-2 edits
            counted = strength in STRENGTHS and not held
            scores, ids = _measure(G, edited, progress, (len(changes) + 1) * len(codes), counted)
            changes[(name, strength, held)] = {k: scores[k] - base[k] for k in scores}
            if ids is not None:
                identity[(name, strength, held)] = np.linalg.norm(ids - base_id, axis=1)

    run(settings)
    pairs = [(a, b) for a, b in CONDITIONED if a in targets and b in directions]
    for t in targets:  # and each edit held against the attribute it drags along most
        up = changes[(t, STRENGTHS[1], ())]
        worst = max((k for k in LEAKAGE_INTO if k != t and k in directions and spread[k] > 0),
                    key=lambda k: abs(up[k].mean()) / spread[k], default=None)  # fmt: skip
        if worst is not None and (t, worst) not in pairs:
            pairs.append((t, worst))
    run([(a, STRENGTHS[1], (b,)) for a, b in pairs])

    out: dict = {"faces": len(codes), "directions": {}}
    kept = []
    for t in targets:
        up, down = changes[(t, STRENGTHS[1], ())], changes[(t, STRENGTHS[0], ())]
        distances = np.concatenate([identity[(t, s, ())] for s in STRENGTHS])
        kept.append(distances < IDENTITY_SAME)
        entry = {
            "change_per_sd": _round((up[t] - down[t]).mean() / (STRENGTHS[1] - STRENGTHS[0])),
            "change_at_plus2": _round(up[t].mean()),
            "change_at_minus2": _round(down[t].mean()),
            "identity_distance_median": _round(np.median(distances), 3),
            "identity_kept_share": _round((distances < IDENTITY_SAME).mean(), 3),
            # other attributes' change at +2, and in their own standard deviations
            "leakage_at_plus2": {k: _round(up[k].mean()) for k in LEAKAGE_INTO if k != t},
            "leakage_at_plus2_sd": {
                k: _round(up[k].mean() / spread[k], 3) if spread[k] else 0.0 for k in LEAKAGE_INTO if k != t
            },
        }
        if t == "age" and ("age", AGE_GOAL_STRENGTH, ()) in changes:
            entry["change_at_plus3"] = _round(changes[("age", AGE_GOAL_STRENGTH, ())]["age"].mean())
        out["directions"][t] = entry
    out["conditioning"] = {}
    for a, b in pairs:
        plain = changes[(a, STRENGTHS[1], ())]
        held = changes[(a, STRENGTHS[1], (b,))]
        before, after = abs(plain[b].mean()), abs(held[b].mean())
        out["conditioning"][f"{a}|{b}"] = {
            "material": bool(before >= MATERIAL_LEAKAGE * spread[b]),
            "leakage_into_held": _round(before), "leakage_into_held_conditioned": _round(after),
            "cut": _round(1 - after / before, 3) if before > 0 else None,
            "target_change": _round(plain[a].mean()), "target_change_conditioned": _round(held[a].mean()),
        }  # fmt: skip
    out["identity_kept_share"] = _round(np.concatenate(kept).mean(), 3) if kept else None
    out["base_scores_mean"] = {k: _round(v.mean()) for k, v in base.items()}
    # Each emotion's own rise at +2 sd: the one reading a user of the emotion sliders looks for.
    out["emotion_rise_at_plus2"] = {}
    for name in (k for k in EMOTIONS if k in directions):
        rise = changes.get((name, STRENGTHS[1], ()), {}).get(name)  # measured above for the most edited ones
        if rise is None:
            scores, _ = _measure(G, apply_edits(codes, directions, {name: STRENGTHS[1]}), lambda done: None, 0, False)
            rise = scores[name] - base[name]
        out["emotion_rise_at_plus2"][name] = _round(rise.mean(), 3)
    return out


def goals(result: dict) -> dict:
    """Each goal of the benchmark with the measured value and whether it is met."""
    d = result["directions"]
    checks = {}
    if "age" in d and "change_at_plus3" in d["age"]:
        checks["age_plus3_years"] = d["age"]["change_at_plus3"]
    if "happy" in d:
        checks["happy_plus2_probability"] = d["happy"]["change_at_plus2"]
    if result.get("emotion_rise_at_plus2"):
        checks["every_emotion_plus2_probability"] = min(result["emotion_rise_at_plus2"].values())
    if result.get("identity_kept_share") is not None:
        checks["identity_kept_share"] = result["identity_kept_share"]
    cuts = [c["cut"] for c in result.get("conditioning", {}).values() if c["material"]]
    if cuts:
        checks["conditioning_cut"] = _round(float(np.mean(cuts)), 3)
    return {k: {"value": v, "goal": GOALS[k], "met": bool(v >= GOALS[k])} for k, v in checks.items()}


def edit_grid(G: Generator, directions: Mapping[str, Direction], code: torch.Tensor, scale: int = 2) -> np.ndarray:
    """One face edited along each direction (rows) by each of ``GRID_STRENGTHS`` (columns), labelled."""
    names = list(directions)[:GRID_ROWS]
    rows = [render(G, torch.cat([apply_edits(code, directions, {n: s}) for s in GRID_STRENGTHS])) for n in names]
    res = G.config.resolution * scale
    label_w, header_h, pad = 110, 18, 2
    canvas = Image.new(
        "RGB", (label_w + len(GRID_STRENGTHS) * (res + pad), header_h + len(names) * (res + pad)), "white"
    )
    draw = ImageDraw.Draw(canvas)
    for j, s in enumerate(GRID_STRENGTHS):
        draw.text((label_w + j * (res + pad) + res // 2 - 8, 3), f"{s:+g}", fill="black")
    for i, (name, faces) in enumerate(zip(names, rows)):
        y = header_h + i * (res + pad)
        draw.text((4, y + res // 2 - 6), name[:17], fill="black")
        for j, face in enumerate(faces):
            tile = Image.fromarray(face).resize((res, res), Image.Resampling.LANCZOS)
            canvas.paste(tile, (label_w + j * (res + pad), y))
    return np.asarray(canvas)


@torch.no_grad()
def bench_edits(G: Generator, directions: Mapping[str, Direction], n: int = 200, encoder=None,
                real_faces: np.ndarray | None = None, grid=None, seed: int = 0, log: Log = print) -> dict:  # fmt: skip
    """The benchmark on ``n`` random faces and, given an encoder and photos, on their encoded codes."""
    from ..faces.images import save_image
    from ..latent.directions import sample_w

    started = time.monotonic()
    w = sample_w(G, n, seed)
    result = {"samples": bench_codes(G, directions, w.unsqueeze(1).repeat(1, G.n_latent, 1), log)}
    result["goals_samples"] = goals(result["samples"])
    if encoder is not None and real_faces is not None and len(real_faces):
        codes = torch.cat(
            [
                encoder.wplus(from_uint8(np.asarray(c)).to(G.device)).cpu()
                for c in np.array_split(real_faces, max(1, len(real_faces) // 64))
            ]
        )
        result["heldout_photos"] = bench_codes(G, directions, codes, log)
        result["goals_heldout_photos"] = goals(result["heldout_photos"])
    if grid is not None:
        mean = G.mean_w().cpu()
        face = mean + 0.85 * (sample_w(G, 1, seed + 7) - mean)  # a typical face: the grid is for looking at
        save_image(edit_grid(G, directions, face.unsqueeze(1).repeat(1, G.n_latent, 1)), grid)
        result["grid"] = str(grid)
    result["threads"] = torch.get_num_threads()
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def covariates_text(search: dict) -> str:
    """The covariate search's fits: what each direction keeps, over how many photos."""
    lines = [f"Found by `python -m pipeline directions --model {search.get('model')}` ({search['seconds']:.0f} s): "
             f"least-squares fits of the encoder's W of {search['photos']} labelled UTKFace training photos "
             "on each attribute together with what the edit must keep (and race), so that each direction "
             "moves its attribute with the others held; age and gender from the true labels, skin tone "
             "measured on the cheeks, the rest read by the classifiers from the photos. Strengths are in "
             "standard deviations of the codes along each direction.",
             "", "| attribute | photos | correlation | keeps |", "|---|---|---|---|"]  # fmt: skip
    for name, f in search["fits"].items():
        slope = " (the slope among men, with age x female fitted beside it)" if f.get("slope") == "men" else ""
        lines.append(f"| {name}{slope} | {f['photos']} | {f['correlation']:+.3f} | {', '.join(f['keeps'])} |")
    later = {k: v for k, v in (search.get("rows") or {}).items() if v[0] > 0}
    if later:
        lines += ["", f"Each direction starts at the W+ row that keeps the person best at +2 sd while keeping {LAYER_KEEP:.0%} "
                  f"of its effect, on {ROW_FACES} optimised training photos: "
                  + ", ".join(f"{k} rows {lo}-{hi - 1}" for k, (lo, hi) in later.items()) + "; the others all rows."]  # fmt: skip
    fixed = search.get("decorrelated") or {}
    if fixed:
        lines += ["", f"Directions that still moved what they keep on the generator's own faces (median leakage above "
                  f"{CORRECT_ABOVE * LEAK_GOAL:.3g} sd on {FIT_FACES} random faces, seed {FIT_SEED}) were corrected with "
                  "those attributes' directions, the amounts solved from the measured leakage "
                  "(`pipeline/training/decorrelation.py`):", ""]  # fmt: skip
        for name, f in fixed.items():
            amounts = ", ".join(f"{h} {a:+.2f} sd" for h, a in f["corrected_by"].items())
            lines.append(f"- {name} (median leakage {f['median_leak_before']:.2f} sd): + {amounts} per sd")
    refit = search.get("gradient_refit") or {}
    if refit:
        lines += ["", f"Then `python -m pipeline directions --refit-by-gradient {','.join(refit)}` "
                  "(`pipeline/training/gradient_directions.py`): the emotion net's gradient through the generator, "
                  "averaged over random faces, as it is (raw) and weighted by W's covariance to the power 1/2 "
                  "(whitened) and 1 (natural), each judged against the regression on other random faces; the one "
                  "that moves its emotion most is kept where that is more than the regression's, with the identity "
                  f"distance at most {IDENTITY_SLACK:g} more and the median leakage no more than the regression's (or under "
                  f"{CORRECT_ABOVE * LEAK_GOAL:.3g} sd):", "",
                  "| emotion | regression | raw | whitened | natural | kept |", "|---|---|---|---|---|---|"]  # fmt: skip
        for name, fit in refit.items():
            cells = [f"{fit[k]['gain']:+.3f} / {fit[k]['leak']:.2f} / {fit[k]['identity']:.2f}"
                     for k in ("regression", "raw", "whitened", "natural")]  # fmt: skip
            lines.append(f"| {name} | {' | '.join(cells)} | {fit['kept']} |")
        lines += ["", "(each cell: the emotion's probability change per +2 sd, the median leakage in sd, the median "
                  "identity distance; half of +2 sd minus -2 sd, as in the leakage matrix)"]  # fmt: skip
    return "\n".join(lines)


def colour_text(held: dict) -> list[str]:
    """The colour hold's lines (``directions --hold-colour``): what each direction holds and what it cost."""
    if not held:
        return []
    from ..training.colour_hold import AS_FITTED, KEEP

    lines = ["", f"Then every attribute direction but {', '.join(AS_FITTED)} (left as fitted: the age net reads the paling "
             "as age) was corrected on the generator's own faces so that it keeps the skin tone (the cheeks' mean "
             f"colour) and, where that keeps {KEEP:.0%} of its effect, the face's centre colour "
             "(`python -m pipeline directions --hold-colour`, `pipeline/training/colour_hold.py`):", "",
             "| direction | holds | cheeks' RGB change per sd before | effect per sd before / after |", "|---|---|---|---|"]  # fmt: skip
    for name, h in held.items():
        after = h["effect_per_sd"][h["held"]]
        cheeks = ", ".join(f"{v:+.1f}" for v in h["change_per_sd_before"][:3])
        lines.append(f"| {name} | {h['held']} | {cheeks} | {h['effect_before']:.3f} / {after:.3f} |")
    return lines


def leakage_text(leakage: dict) -> str:
    """The leakage matrices as tables, with their pictures."""
    from .leakage import markdown, summary

    lines = ["", "### Leakage matrix", "",
             "Each row: a direction at +2 sd (half of +2 minus -2, median over faces); each column: the change of a "
             "measured attribute in standard deviations of real faces, and the identity distance to the unedited face. "
             "Held-out photos are edited at the photo's resolution and read from the photo-resolution face."]  # fmt: skip
    for part, title in (("photos", "held-out photos"), ("random", "random faces")):
        if part not in leakage:
            continue
        table = leakage[part]["matrix"]
        worst = max(v["median_leak_sd"] for v in summary(table).values())
        lines += ["", f"#### {leakage[part]['faces']} {title} (`{leakage[part]['picture']}`): "
                  f"largest median off-diagonal leak {worst:.2f} sd", "", markdown(table)]  # fmt: skip
    return "\n".join(lines)


def card_text(search: dict, bench: dict) -> str:
    """Markdown for a model folder's DIRECTIONS.md: the search's fits and the benchmark's numbers."""
    lines = ["## Edit directions", ""]
    fits, real = search.get("fits", {}), search.get("real_route")
    if search.get("method") == "covariates":
        lines += [covariates_text(search)]
    elif fits:  # files found by the directions command carry their search's report
        lines.append(f"Found by `python -m pipeline directions --model {search.get('model')} --n {search['n']}` "
                     f"({search['total_seconds']:.0f} s on {search['threads']} thread(s)): linear SVMs on the W codes of "
                     f"{search['n']} labelled random faces, trained on the top and bottom {search['extreme_fraction']:.0%} "
                     f"by score; shipped when the held-out accuracy is at least {search['usable_accuracy']:.2f}. "
                     "Strengths are in standard deviations of the model's faces along each direction.")  # fmt: skip
        lines += ["", "| attribute | held-out accuracy | correlation | shipped |", "|---|---|---|---|"]
        for name, f in sorted(fits.items(), key=lambda kv: -kv[1]["accuracy"]):
            lines.append(
                f"| {name} | {f['accuracy']:.3f} | {f['correlation']:+.3f} | {'yes' if f['shipped'] else 'no'} |"
            )
    if real:
        lines += ["", f"Real-photo route ({real['photos']} encoded training photos, true labels): "
                  + "; ".join(f"{k}: accuracy {real[k]['accuracy']:.3f}, cosine to the generated-sample direction "
                              f"{real[k]['cosine_generated']:+.3f}" for k in ("age", "gender")) + "."]  # fmt: skip
    lines += colour_text(search.get("colour_held") or {})
    if "samples" in bench:
        real_n = bench.get("heldout_photos", {}).get("faces", 0)
        lines += ["", f"Measured by `python -m pipeline bench edit --model {bench.get('model')} --n {bench['samples']['faces']} "
                  f"--n-real {real_n} --card` ({bench.get('seconds', 0):.0f} s); grid of edits: `{bench.get('grid', '')}`."]  # fmt: skip
    for part, title in (("samples", "random faces"), ("heldout_photos", "encoded held-out photos")):
        if part not in bench:
            continue
        b = bench[part]
        lines += ["", f"### Edits on {b['faces']} {title}", "",
                  "| direction | change per sd | at +2 sd | identity kept (+-2 sd) | largest leak at +2 sd |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name, d in b["directions"].items():
            leak = max(d["leakage_at_plus2_sd"].items(), key=lambda kv: abs(kv[1]))
            lines.append(f"| {name} | {d['change_per_sd']:+.3f} | {d['change_at_plus2']:+.3f} | "
                         f"{d['identity_kept_share']:.0%} | {leak[0]} {leak[1]:+.2f} sd |")  # fmt: skip
        lines += [
            "",
            "| conditioned edit (+2 sd) | leak into held attribute | conditioned | cut |",
            "|---|---|---|---|",
        ]
        for pair, c in b["conditioning"].items():
            cut = f"{c['cut']:.0%}" if c["cut"] is not None else "-"
            lines.append(
                f"| {pair.replace('|', ', holding ')} | {c['leakage_into_held']:.4f} | {c['leakage_into_held_conditioned']:.4f} | {cut} |"
            )
        goals_measured = bench.get(f"goals_{part}", {})
        if b.get("emotion_rise_at_plus2"):
            lines += ["", "Each emotion's probability at +2 sd, rise over the unedited faces: "
                      + ", ".join(f"{k} {v:+.3f}" for k, v in b["emotion_rise_at_plus2"].items()) + "."]  # fmt: skip
        lines += ["", "Goals: " + "; ".join(f"{k} {g['value']} (goal {g['goal']}: {'met' if g['met'] else 'not met'})"
                                           for k, g in goals_measured.items()) + "."]  # fmt: skip
    if "leakage" in bench:
        lines.append(leakage_text(bench["leakage"]))
    lines += ["", "Units: age in years, yaw and pitch in degrees, gender as P(female), emotions as probabilities, smile "
              "and mouth opening as landmark ratios; identity kept = dlib descriptor distance below 0.6; "
              "leaks in standard deviations of the other attribute over the faces.", ""]  # fmt: skip
    return "\n".join(lines)
