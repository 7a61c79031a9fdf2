"""dream-ensemble (and ensemble.py): train N members and save ONE ensemble model file, or
combine existing runs into one.

  dream-ensemble --train_data=FILE --output_dir=OUT --ensemble_members=3 [train.py flags]
  dream-ensemble --members=RUN1,RUN2,RUN3 --output_dir=OUT

OUT/model.keras (+ target_scaler.json, ensemble.json) then works with predict.py,
evaluate.py and --export like any run. Every train.py flag applies to each member; member
K (0, 1, ...) trains with --seed + K, in OUT/members/seed_<--seed + K>/.
"""
from __future__ import annotations

from dream_keras.cli.tensorflow_logging import import_tensorflow_quietly

import_tensorflow_quietly()  # before the flags, whose defaults come from the model

from absl import flags  # noqa: E402

from dream_keras.cli import runner, training_flags  # noqa: E402

training_flags.define_flags(required=("output_dir",))
_MEMBERS = flags.DEFINE_integer(
    "ensemble_members", 3, "Members to train, with seeds --seed, --seed + 1, ... (N x the "
    "training time; every prediction then runs N models).", lower_bound=1)
_FROM_RUNS = flags.DEFINE_list(
    "members", [], "Instead of training: combine these trained runs (run directories or "
    "their model.keras, trained on the same file) into the ensemble at --output_dir.")
_BOTH_STRANDS = flags.DEFINE_bool(
    "ensemble_strands", False, "Also average each member over the reverse strand inside "
    "the ensemble file (2 x N model evaluations per prediction).")
flags.register_validator(
    "members", lambda runs: all(run.strip() for run in runs),
    message="--members: an empty entry (a doubled or trailing comma?); list run directories "
            "or model.keras files separated by single commas")
flags.register_multi_flags_validator(
    ["train_data", "members"], lambda values: bool(values["train_data"]) != bool(values["members"]),
    message="give either --train_data (train the members) or --members (combine trained "
            "runs): one of them, not both")
# What combining trained runs (--members) reads; any other flag given is a mistake.
_USED_WITH_MEMBERS = ("output_dir", "overwrite", "members", "ensemble_strands")


def ignored_with_members(values) -> list[str]:
    """The training flags given on the command line that --members would ignore."""
    ours = values.get_flags_for_module(training_flags.__name__) + [values["ensemble_members"]]
    return sorted(f"--{flag.name}" for flag in ours
                  if flag.present and flag.name not in _USED_WITH_MEMBERS)


def ensemble_from_flags() -> str:
    from dream_keras import ensemble
    from dream_keras.errors import ConfigurationError

    values = flags.FLAGS
    if _FROM_RUNS.value and ignored_with_members(values):
        raise ConfigurationError(f"{', '.join(ignored_with_members(values))}: training "
                                 "flags, which --members (combining runs already trained) "
                                 "does not use; leave them out")
    if _FROM_RUNS.value:
        record = ensemble.write_ensemble(_FROM_RUNS.value, values.output_dir,
                                         both_strands=_BOTH_STRANDS.value,
                                         overwrite=values.overwrite)
    else:
        record = ensemble.train_ensemble(training_flags.config_from_flags(), _MEMBERS.value,
                                         both_strands=_BOTH_STRANDS.value)
    scores = [(member.get("best_metrics") or {}).get("val_pearson")
              for member in record["members"]]
    listed = ", ".join("nan" if s is None else f"{s:.4f}" for s in scores)
    diverged = [str(member.get("seed")) for member in record["members"]
                if member.get("diverged_epochs")]
    warning = (f"; training DIVERGED in member(s) of seed {', '.join(diverged)} (their "
               "run.json: diverged_epochs)" if diverged else "")
    return (f"ensemble of {len(scores)} members (their val_pearson: {listed}) written to "
            f"{values.output_dir}/model.keras; cost: {record['cost']}{warning}")


def main() -> None:
    runner.run(ensemble_from_flags)


if __name__ == "__main__":
    main()
