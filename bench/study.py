#!/usr/bin/env python3
"""Does a reconstructive decoder make a better classifier? The whole study,
on the CPU, resumably.

    bench/study.sh                 # everything: runs, results, README, figures
    bench/study.py --report-only   # tables and figures from the results file

Design (paired): for each seed the classifier is trained once (the paper's
step 1: the `pretrain` phase of the .net file alone, `--augment=none`), and
every model of that seed starts from that same classifier (`netrun train
--weights`), with the same seed for the decoders' initialisation, the
shuffling, the augmentation and dropout. Each model then runs the rest of the
file's schedule: the decoder-only phases where its variant has them (steps 2
and 3), then `joint` (step 4). The baseline (`none`) runs `joint` alone: as
many extra classifier epochs as the augmented models' joint phase, the
paper's control.

Stages, each skipped run by run when the results file already has it:
  main   the seven models on examples/fashion-mnist.net, --seeds seeds;
  recon  PSNR per macro-layer (`netrun reconstruct`) of SAE-first and
         SWWAE-first, every main seed, and their pictures for seed 1;
  sweep  the joint phase's lambda and gammas times each --multipliers value,
         sae-all and swwae-all, the first --sweep-seeds seeds (the x1 runs
         are the main stage's); decoder phases unchanged, since with a frozen
         encoder a loss weight there is only a learning rate;
  deep   none, sae-all and swwae-all on bench/deep-plain.net;
  long   --long-models on examples/fashion-mnist.net with the classifier's
         and the joint phase's epochs (and their `steps`, `lr step ...
         every`) times --long-factor, the first --long-seeds seeds: is what the main
         stage finds a transient of its short schedule? Its classifiers
         are its own (step 1 trained longer too).

Every record holds the final test error (10,000 images), the training error
(all 60,000 training images, no augmentation: `netrun eval --split train`)
and the run's seconds. The results file is rewritten after each run, so an
interrupted study continues where it stopped.

Needs a build of netc (BUILD, default build/), Fashion-MNIST, and for the
figures python3-matplotlib (bench/study.sh installs it).
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

MODELS = ["none", "sae-first", "sae-all", "sae-layerwise", "swwae-first",
          "swwae-all", "swwae-layerwise"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two-sided 95% quantiles of Student's t by degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
        7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131,
        20: 2.086, 30: 2.042}


def t975(df):
    if df in T975:
        return T975[df]
    below = [d for d in T975 if d < df]
    return T975[max(below)] if df < 30 else 1.96


class StudyError(Exception):
    pass


# --- the .net file, edited per run ------------------------------------------

def phase_line(text, name, path):
    m = re.search(r"^[ \t]*phase[ \t]+" + name + r"[ \t]*\{.*\}[ \t]*$", text,
                  re.M)
    if not m:
        raise StudyError(f"{path}: the study needs a one-line "
                         f"'phase {name} {{ ... }}'")
    return m


def classifier_net(text, path):
    """Step 1 alone: the pretrain phase, every other phase dropped."""
    phase_line(text, "pretrain", path)
    return re.sub(r"^[ \t]*phase[ \t]+(?!pretrain\b)\w+[ \t]*\{.*\}[ \t]*\n",
                  "", text, flags=re.M)


def augment_weights(text, path):
    """The augment section's lambda and gammas."""
    m = re.search(r"^augment\s+[\w-]+\s*\{(.*?)\}", text, re.M | re.S)
    if not m:
        raise StudyError(f"{path}: the study needs an 'augment' section")
    body = m.group(1)
    lam = re.search(r"\blambda\s+([0-9.eE+-]+)", body)
    if not lam:
        raise StudyError(f"{path}: the augment section sets no lambda")
    gammas = re.findall(r"(\w+)=([0-9.eE+-]+)",
                        " ".join(re.findall(r"\bgamma\s+([^;\n]*)", body)))
    return float(lam.group(1)), [(k, float(v)) for k, v in gammas]


def model_net(text, path, multiplier=None):
    """Steps 2-4: the pretrain phase dropped; with a multiplier, the joint
    phase's lambda and gammas scaled by it."""
    m = phase_line(text, "pretrain", path)
    text = text[:m.start()] + text[m.end() + 1:]
    if multiplier is not None:
        lam, gammas = augment_weights(text, path)
        joint = phase_line(text, "joint", path)
        settings = f"lambda {lam * multiplier:g}"
        if gammas:
            settings += "; gamma " + " ".join(
                f"{k}={v * multiplier:g}" for k, v in gammas)
        line = joint.group(0).replace("{", "{ " + settings + ";", 1)
        text = text[:joint.start()] + line + text[joint.end():]
    return text


def longer(text, path, factor):
    """The pretrain and joint phases' `epochs N`, `steps N` and `every N`
    times `factor`: the same schedule, run `factor` times as long."""
    for name in ("pretrain", "joint"):
        m = phase_line(text, name, path)
        if not re.search(r"\bepochs\s+\d+", m.group(0)):
            raise StudyError(f"{path}: the study's long stage needs "
                             f"'epochs N' in phase {name}")
        line = re.sub(r"\b(epochs|steps|every)(\s+)(\d+)",
                      lambda g: f"{g[1]}{g[2]}{int(g[3]) * factor}",
                      m.group(0))
        text = text[:m.start()] + line + text[m.end():]
    return text


def sweep_tag(model, multiplier):
    """A model's name in the results: with the joint phase's weights times
    `multiplier` (None or 1: the file's own), `<model>-x<multiplier>`."""
    return model if multiplier in (None, 1) else f"{model}-x{multiplier:g}"


# --- running netc and netrun --------------------------------------------------

class Study:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        self.results_path = os.path.abspath(args.results)
        self.results = {"runs": {}}
        if os.path.exists(self.results_path):
            with open(self.results_path) as f:
                self.results = json.load(f)
        self.done = 0
        self.initial = set(self.runs)  # what the results file held
        self.skipped = set()  # ... and this call needed
        os.makedirs(self.out, exist_ok=True)

    @property
    def runs(self):
        return self.results["runs"]

    def save(self):
        os.makedirs(os.path.dirname(self.results_path), exist_ok=True)
        tmp = self.results_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.results_path)

    def tool(self, name, *argv, log=None):
        cmd = [os.path.join(self.build, "bin", name), *map(str, argv)]
        p = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if log:
            with open(log, "a") as f:
                f.write("$ " + " ".join(cmd) + "\n" + p.stdout)
        if p.returncode != 0:
            raise StudyError(f"{' '.join(cmd)} failed ({p.returncode}):\n"
                             f"{p.stdout[-2000:]}")
        return p.stdout

    def compile(self, net_text, name, variant):
        """Writes <out>/<name>.net and compiles it to <name>.trainer."""
        path = os.path.join(self.out, name + ".net")
        with open(path, "w") as f:
            f.write(net_text)
        trainer = os.path.join(self.out, name + ".trainer")
        shutil.rmtree(trainer, ignore_errors=True)
        self.tool("netc", path, f"--augment={variant}", "-o", trainer)
        return trainer

    def train(self, trainer, seed, weights=None):
        metrics = trainer + ".jsonl"
        log = trainer + ".log"
        for stale in (metrics, log):
            if os.path.exists(stale):
                os.remove(stale)
        argv = ["train", trainer, "--seed", seed, "--log-every", 100000,
                "--metrics", metrics]
        if weights:
            argv += ["--weights", weights]
        self.tool("netrun", *argv, log=log)
        events = [json.loads(l) for l in open(metrics)]
        evals = [e for e in events if e["event"] == "eval"]
        if not evals:
            raise StudyError(f"{metrics}: no evaluation")
        steps = [e for e in events if e["event"] == "step"]
        last = [e for e in steps if e["phase"] == steps[-1]["phase"]][-50:]
        terms = {k: statistics.fmean(e["terms"][k] for e in last)
                 for k in last[-1]["terms"]}
        return {"test_error": evals[-1]["test_error"], "final_terms": terms}

    def train_error(self, trainer):
        out = self.tool("netrun", "eval", trainer, "--split", "train")
        m = re.search(r"train error ([0-9.]+)%", out)
        if not m:
            raise StudyError(f"netrun eval {trainer}: unexpected output {out}")
        return float(m.group(1))

    def run(self, key, fn):
        if key in self.runs:
            if key in self.initial:
                self.skipped.add(key)
            return self.runs[key]
        print(f"[study] {key} ...", flush=True)
        start = time.monotonic()
        record = fn()
        record["seconds"] = round(time.monotonic() - start, 1)
        self.runs[key] = record
        self.save()
        self.done += 1
        print(f"[study] {key}: " + ", ".join(
            f"{k} {v}" for k, v in record.items() if not isinstance(v, dict)),
            flush=True)
        return record

    # --- the runs ---------------------------------------------------------

    @staticmethod
    def source(net):
        """The net's .net text, as the stage runs it."""
        text = open(net["path"]).read()
        return net.get("edit", lambda t, p: t)(text, net["path"])

    def classifier(self, net, seed):
        """Step 1 for `seed`: its checkpoint, trained if not at hand."""
        text = self.source(net)
        ckpt = os.path.join(self.out, f"{net['id']}-classifier-seed{seed}"
                            ".safetensors")
        key = f"{net['id']}/classifier/seed{seed}"

        def fn():
            trainer = self.compile(classifier_net(text, net["path"]),
                                   f"{net['id']}-classifier-seed{seed}", "none")
            r = self.train(trainer, seed)
            shutil.copyfile(os.path.join(trainer, "checkpoint.safetensors"),
                            ckpt)
            return {"test_error": r["test_error"]}

        if key in self.runs and not os.path.exists(ckpt):
            print(f"[study] {key}: the checkpoint is gone; training it again "
                  "(the same seed gives the same classifier)", flush=True)
            del self.runs[key]
        self.run(key, fn)
        return ckpt

    def model(self, net, model, seed, multiplier=None):
        tag = sweep_tag(model, multiplier)
        key = f"{net['id']}/{tag}/seed{seed}"
        if key in self.runs:
            if key in self.initial:
                self.skipped.add(key)
            return self.runs[key]
        ckpt = self.classifier(net, seed)
        text = self.source(net)

        def fn():
            name = f"{net['id']}-{tag}-seed{seed}"
            trainer = self.compile(model_net(text, net["path"], multiplier),
                                   name, model)
            r = self.train(trainer, seed, weights=ckpt)
            r["train_error"] = self.train_error(trainer)
            return r

        return self.run(key, fn)

    def reconstruction(self, net, model, seed):
        key = f"{net['id']}/{model}/seed{seed}/psnr"
        self.model(net, model, seed)
        trainer = os.path.join(self.out, f"{net['id']}-{model}-seed{seed}"
                               ".trainer")

        def fn():
            png = os.path.join(self.out, f"{net['id']}-{model}-seed{seed}"
                               "-reconstructions.png")
            out = self.tool("netrun", "reconstruct", trainer, "--out", png)
            psnr = dict(re.findall(r"(\w+) ([0-9.-]+) dB", out))
            images = re.search(r"PSNR over (\d+) test images", out)
            if not psnr or not images:
                raise StudyError(f"netrun reconstruct: no PSNR in {out}")
            return {"psnr": {k: float(v) for k, v in psnr.items()},
                    "images": int(images.group(1)), "picture": png}

        return self.run(key, fn)

    def all(self):
        a = self.args
        main = {"id": a.main_id, "path": a.net}
        for seed in range(1, a.seeds + 1):
            for model in a.models:
                self.model(main, model, seed)
        if "recon" in a.stages:
            for seed in range(1, a.seeds + 1):
                for model in a.recon_models:
                    self.reconstruction(main, model, seed)
        if "sweep" in a.stages:
            for seed in range(1, a.sweep_seeds + 1):
                self.model(main, "none", seed)
                for model in a.sweep_models:
                    for mult in a.multipliers:
                        self.model(main, model, seed,
                                   None if mult == 1 else mult)
        if "deep" in a.stages:
            deep = {"id": a.deep_id, "path": a.deep_net}
            for seed in range(1, a.deep_seeds + 1):
                for model in a.deep_models:
                    self.model(deep, model, seed)
        if "long" in a.stages:
            long = {"id": a.long_id, "path": a.net,
                    "edit": lambda t, p: longer(t, p, a.long_factor)}
            for seed in range(1, a.long_seeds + 1):
                for model in a.long_models:
                    self.model(long, model, seed)


# --- the report -----------------------------------------------------------

def mean_std(xs):
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.fmean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def paired(xs, ys):
    """Mean of ys - xs with its 95% confidence interval (Student's t)."""
    d = [y - x for x, y in zip(xs, ys)]
    if len(d) < 2:
        return None
    m = statistics.fmean(d)
    h = t975(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    return m, m - h, m + h


def fmt_paired(p):
    if p is None:
        return "–"
    m, lo, hi = p
    verdict = "" if lo <= 0 <= hi else (" **worse**" if lo > 0 else
                                        " **better**")
    return f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]{verdict}"


def series(runs, prefix, tag, seeds, field):
    out = []
    for s in seeds:
        r = runs.get(f"{prefix}/{tag}/seed{s}")
        if r is None or field not in r:
            return None
        out.append(r[field])
    return out


def comparison_table(runs, prefix, models, seeds):
    lines = ["| model | test error % | vs. baseline (95% CI) | "
             "training error % | vs. baseline (95% CI) |",
             "|---|---|---|---|---|"]
    base_t = series(runs, prefix, "none", seeds, "test_error")
    base_r = series(runs, prefix, "none", seeds, "train_error")
    for m in models:
        t = series(runs, prefix, m, seeds, "test_error")
        r = series(runs, prefix, m, seeds, "train_error")
        if t is None:
            continue
        name = "none (baseline)" if m == "none" else m
        dt = "" if m == "none" or base_t is None else fmt_paired(
            paired(base_t, t))
        dr = "" if m == "none" or base_r is None or r is None else fmt_paired(
            paired(base_r, r))
        lines.append(f"| {name} | {mean_std(t)} | {dt} | "
                     f"{mean_std(r or [])} | {dr} |")
    return lines


def report(args, runs):
    seeds = list(range(1, args.seeds + 1))
    lines = []
    secs = sum(r.get("seconds", 0) for r in runs.values())
    lines.append(f"Runs: {len(runs)}, {secs / 3600:.2f} h of run time in "
                 "all (the sum of the records' seconds).")
    lines.append("")
    lines.append(f"**The seven models**, `{os.path.relpath(args.net, ROOT)}`,"
                 f" {len(seeds)} paired seeds (mean ± std over seeds; the "
                 "difference from the baseline is paired by seed, a "
                 "negative one is better):")
    lines.append("")
    lines += comparison_table(runs, args.main_id, args.models, seeds)
    cls = series(runs, args.main_id, "classifier", seeds, "test_error")
    if cls:
        lines.append("")
        lines.append(f"The classifiers of step 1 (every model's start): "
                     f"{mean_std(cls)}% test error.")

    if "sweep" in args.stages:
        sseeds = list(range(1, args.sweep_seeds + 1))
        lines.append("")
        lines.append(f"**λ sweep**: the joint phase's λ and γ times the "
                     f"factor, seeds {sseeds[0]}-{sseeds[-1]}; test error % "
                     "and the paired difference from the baseline (95% CI):")
        lines.append("")
        lines.append("| model | " + " | ".join(
            f"x{m:g}" for m in args.multipliers) + " |")
        lines.append("|---|" + "---|" * len(args.multipliers))
        base = series(runs, args.main_id, "none", sseeds, "test_error")
        for model in args.sweep_models:
            cells = []
            for m in args.multipliers:
                tag = sweep_tag(model, m)
                t = series(runs, args.main_id, tag, sseeds, "test_error")
                cells.append("–" if t is None else
                             f"{mean_std(t)}<br>{fmt_paired(paired(base, t))}"
                             if base else mean_std(t))
            lines.append(f"| {model} | " + " | ".join(cells) + " |")

    def stage_table(title, net, prefix, models, count):
        """A stage's comparison table under `title`, and its classifiers."""
        seeds_ = list(range(1, count + 1))
        lines.append("")
        lines.append(f"{title}, `{os.path.relpath(net, ROOT)}`, {count} "
                     f"paired seed{'s' if count > 1 else ''}:")
        lines.append("")
        lines.extend(comparison_table(runs, prefix, models, seeds_))
        cls = series(runs, prefix, "classifier", seeds_, "test_error")
        if cls:
            lines.append("")
            lines.append(f"Its classifiers of step 1: {mean_std(cls)}% test "
                         "error.")

    if "deep" in args.stages:
        stage_table("**The deep plain net**", args.deep_net, args.deep_id,
                    args.deep_models, args.deep_seeds)
    if "long" in args.stages:
        stage_table(f"**{args.long_factor}x longer**: the classifier's and "
                    f"the joint phase's epochs times {args.long_factor}",
                    args.net, args.long_id, args.long_models, args.long_seeds)

    if "recon" in args.stages:
        lines.append("")
        levels, images = [], 0
        for m in args.recon_models:
            r = runs.get(f"{args.main_id}/{m}/seed1/psnr")
            if r:
                levels, images = list(r["psnr"]), r["images"]
                break
        lines.append(f"**Reconstructions**: PSNR (dB, {images:,} test images)"
                     " of the image decoded from each macro-layer's output, "
                     f"mean ± std over {len(seeds)} seeds:")
        lines.append("")
        lines.append("| model | " + " | ".join(
            f"from {l}" for l in levels) + " |")
        lines.append("|---|" + "---|" * len(levels))
        for m in args.recon_models:
            cells = []
            for l in levels:
                xs = [runs[k]["psnr"][l] for k in
                      (f"{args.main_id}/{m}/seed{s}/psnr" for s in seeds)
                      if k in runs]
                cells.append(mean_std(xs))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def figures(args, runs, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[study] no matplotlib (apt-get install python3-matplotlib): "
              "no figures", file=sys.stderr)
        return []
    os.makedirs(outdir, exist_ok=True)
    written = []

    def save(fig, name):
        fig.tight_layout()
        path = os.path.join(outdir, name)
        fig.savefig(path, dpi=110)
        written.append(path)
    seeds = list(range(1, args.seeds + 1))

    # Test error per model, with the paired difference beside it.
    models = [m for m in args.models
              if series(runs, args.main_id, m, seeds, "test_error")]
    base = series(runs, args.main_id, "none", seeds, "test_error")
    if models:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for i, m in enumerate(models):
            t = series(runs, args.main_id, m, seeds, "test_error")
            ax1.errorbar(i, statistics.fmean(t),
                         yerr=statistics.stdev(t) if len(t) > 1 else 0,
                         fmt="o", capsize=4, color="C0")
            ax1.plot([i] * len(t), t, ".", color="C7", alpha=0.6)
            if m != "none" and base and len(t) > 1:
                d, lo, hi = paired(base, t)
                ax2.errorbar(i, d, yerr=[[d - lo], [hi - d]], fmt="o",
                             capsize=4, color="C1")
        for ax in (ax1, ax2):
            ax.set_xticks(range(len(models)))
            ax.set_xticklabels(models, rotation=30, ha="right")
            ax.grid(alpha=0.3)
        ax1.set_ylabel("test error % (mean ± std; dots: seeds)")
        ax2.axhline(0, color="k", lw=0.8)
        ax2.set_ylabel("vs. baseline, points (paired, 95% CI)")
        fig.suptitle(f"Fashion-MNIST, {len(seeds)} paired seeds")
        save(fig, "test-error.png")
        plt.close(fig)

    # Error against lambda.
    if "sweep" in args.stages:
        sseeds = list(range(1, args.sweep_seeds + 1))
        lam, _ = augment_weights(open(args.net).read(), args.net)
        fig, ax = plt.subplots(figsize=(6, 4))
        sbase = series(runs, args.main_id, "none", sseeds, "test_error")
        if sbase:
            mu = statistics.fmean(sbase)
            ax.axhline(mu, color="k", ls="--", lw=1, label="baseline (none)")
        drawn = False
        for j, model in enumerate(args.sweep_models):
            xs, ys, es = [], [], []
            for m in args.multipliers:
                tag = sweep_tag(model, m)
                t = series(runs, args.main_id, tag, sseeds, "test_error")
                if t:
                    xs.append(lam * m)
                    ys.append(statistics.fmean(t))
                    es.append(statistics.stdev(t) if len(t) > 1 else 0)
            if xs:
                drawn = True
                ax.errorbar(xs, ys, yerr=es, fmt="o-", capsize=4,
                            color=f"C{j}", label=model)
        if drawn:
            ax.set_xscale("log")
            ax.set_xlabel("λ of the joint phase (γ scaled alike)")
            ax.set_ylabel("test error % (mean ± std)")
            ax.grid(alpha=0.3)
            ax.legend()
            save(fig, "lambda.png")
        plt.close(fig)

    # SAE against SWWAE, seed 1.
    if "recon" in args.stages:
        pics = [(m, runs.get(f"{args.main_id}/{m}/seed1/psnr"))
                for m in args.recon_models]
        pics = [(m, r) for m, r in pics if r and os.path.exists(r["picture"])]
        if pics:
            fig, axes = plt.subplots(1, len(pics), figsize=(5 * len(pics), 3))
            axes = axes if len(pics) > 1 else [axes]
            for ax, (m, r) in zip(axes, pics):
                ax.imshow(plt.imread(r["picture"]), cmap="gray",
                          interpolation="nearest")
                ax.set_title(f"{m}: " + ", ".join(
                    f"{k} {v:.1f} dB" for k, v in r["psnr"].items()))
                ax.axis("off")
            fig.suptitle("seed 1: test images (top row) and each "
                         "macro-layer's decoding (rows below)")
            save(fig, "reconstructions.png")
            plt.close(fig)
    return written


def write_readme(path, lines):
    begin, end = "<!-- study:begin -->", "<!-- study:end -->"
    text = open(path).read()
    if begin not in text or end not in text:
        raise StudyError(f"{path}: no '{begin}' ... '{end}' section to "
                         "write the tables into")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path + ".tmp", "w") as f:
        f.write(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.environ.get(
        "BUILD", os.path.join(ROOT, "build")))
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "study"),
                    help="trainers, checkpoints and logs (default out/study)")
    ap.add_argument("--results", default=os.path.join(
        ROOT, "docs", "study", "results.json"))
    ap.add_argument("--figures", default=os.path.join(ROOT, "docs", "study"))
    ap.add_argument("--readme", default=os.path.join(ROOT, "README.md"),
                    help="where the tables go, between the study markers "
                    "('' for nowhere)")
    ap.add_argument("--net", default=os.path.join(
        ROOT, "examples", "fashion-mnist.net"))
    ap.add_argument("--deep-net", default=os.path.join(
        ROOT, "bench", "deep-plain.net"))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--stages", default="main,recon,sweep,deep,long")
    ap.add_argument("--sweep-seeds", type=int, default=3)
    ap.add_argument("--sweep-models", default="sae-all,swwae-all")
    ap.add_argument("--multipliers", default="0.01,1,10")
    ap.add_argument("--recon-models", default="sae-first,swwae-first")
    ap.add_argument("--deep-seeds", type=int, default=3)
    ap.add_argument("--deep-models", default="none,sae-all,swwae-all")
    ap.add_argument("--long-seeds", type=int, default=5)
    ap.add_argument("--long-models", default="none,sae-all,swwae-all")
    ap.add_argument("--long-factor", type=int, default=5)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args()
    for name in ("models", "stages", "sweep_models", "recon_models",
                 "deep_models", "long_models"):
        setattr(args, name, [x for x in getattr(args, name).split(",") if x])
    args.multipliers = [float(x) for x in args.multipliers.split(",")]
    for m in args.models + args.sweep_models + args.deep_models + \
            args.recon_models + args.long_models:
        if m not in MODELS:
            ap.error(f"unknown model '{m}' (one of {', '.join(MODELS)})")
    if "none" not in args.models:
        ap.error("--models must include the baseline 'none'")
    args.net = os.path.abspath(args.net)
    args.deep_net = os.path.abspath(args.deep_net)
    args.main_id = os.path.splitext(os.path.basename(args.net))[0]
    args.deep_id = os.path.splitext(os.path.basename(args.deep_net))[0]
    if args.deep_id == args.main_id:
        args.deep_id += "-deep"
    if args.long_factor < 1:
        ap.error("--long-factor must be a whole number of 1 or more")
    args.long_id = f"{args.main_id}-x{args.long_factor}-epochs"

    study = Study(args)
    wall = time.monotonic()
    try:
        if not args.report_only:
            study.all()
    except (StudyError, KeyboardInterrupt) as e:
        print(f"study: stopped: {e}\nstudy: {study.done} runs done, the "
              f"results so far are in {study.results_path}; run the same "
              "command again to continue", file=sys.stderr)
        return 1
    print(f"[study] {study.done} runs done, {len(study.skipped)} found done in "
          f"{study.results_path}, {time.monotonic() - wall:.0f} s", flush=True)
    lines = report(args, study.runs)
    print("\n".join(lines))
    if args.readme:
        write_readme(args.readme, lines)
    if not args.no_figures:
        for path in figures(args, study.runs, args.figures):
            print(f"[study] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
