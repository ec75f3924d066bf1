"""`lenet sweep`: many lenet runs over a space of recipes and seeds, on Ray Tune, judged on a validation split.

Ray Tune schedules the trials, stops poor ones early (ASHA) and retries the ones whose process or
node died; lenet adds no scheduler or result store of its own. Its record is the sweep directory:

    runs/SWEEP/
      space.toml         the SPACE file as given;  plan.json  every configuration, resolved
      trials.json        which Tune trials ended, and how (finished, stopped early, error)
      trial-NNNN/        configuration NNNN: an ordinary run directory (or seed-K/ run directories)
      tune/              Ray Tune's experiment (tune-resume-N/ for each resume's); lenet never reads it back
      sweep.csv, sweep.json, sweep.html, best_recipe.toml   the results, written at the end

A Tune trial is one configuration and a group of its seeds, trained one after another by the very
`train` that `lenet train` calls. A retried or resumed trial goes on from each run's last completed
epoch (train_state.pt); a run with a summary.json is never trained again.

The modules: space (the SPACE file), plan (the sweep's JSON records), trainable (a trial, in a Ray
worker), driver (Ray, Tune, progress), table and page (the results). Only driver and trainable
import Ray, and only `lenet sweep` imports them: training, predicting, serving and `import lenet`
never need Ray.
"""
