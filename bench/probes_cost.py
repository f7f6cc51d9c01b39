"""The cost of the probes (out-of-domain perplexity + the informative suite) against the profile's
first evaluation (held-out perplexity + the offline lm-eval suite), on one student-sized model (the
teacher truncated by the profile's strategy, untrained), in the same process, one after the other.
Usage: python bench/probes_cost.py [PROFILE] [--first-seconds S]. Prints seconds and the ratio (issue
28: <= 1.5x). `--first-seconds S` skips the first evaluation and divides by S, a time measured before
by this bench on the same machine (when only the probes changed)."""
import sys
import time

from distill_lib.evaluate import evaluate_model
from distill_lib.probes import run_probes
from distill_lib.study import Study

args = sys.argv[1:]
given = float(args.pop(args.index("--first-seconds") + 1)) if "--first-seconds" in args else None
args = [a for a in args if a != "--first-seconds"]
study = Study.load(args[0] if args else "smollm2", log=None)
cfg = study.cfg
model, _ = study.truncated_untrained(cfg.strategy)
study.suite_dir  # noqa: B018  (built once, outside the timing)
if given is None:
    started = time.perf_counter()
    first = evaluate_model(model, study.data.tokenizer, study.data, cfg.eval, study.suite_dir)
    first_s, first_ppl = time.perf_counter() - started, f"{first['perplexity']['ppl']:.4g}"
else:
    first_s, first_ppl = given, "given"
started = time.perf_counter()
probes = run_probes(model, study.data.tokenizer, study.data.documents["test"], cfg.probes, cfg.data.block_length,
                    cfg.eval.max_length, cfg.eval.batch_size)
probes_s = time.perf_counter() - started
print(f"{cfg.name}: first evaluation {first_s:.1f} s (ppl {first_ppl}); probes {probes_s:.1f} s "
      f"(out-of-domain {probes['ood']['seconds']:.1f} s, ppl {probes['ood']['ppl']:.4g}); ratio {probes_s / first_s:.2f}x")
for row in probes["suite"]:
    print(f"  {row['task']}: {100 * row['value']:.1f} ± {100 * row['stderr']:.1f} % (n={row['n']}, chance {100 * row['chance']:.0f}%)")
