"""The run folder, one owner of every path in it: lock, config, metrics, checkpoints, best model, card, curves.

- :mod:`~simcse.runs.folder`: :class:`~simcse.runs.folder.RunFolder` names every file of a run; writes the
  config and writes and reads ``metrics.jsonl``; :class:`~simcse.runs.folder.SaveError` for a failed write.
- :mod:`~simcse.runs.lock`: one run at a time in a folder.
- :mod:`~simcse.runs.checkpoints`: :class:`~simcse.runs.checkpoints.TrainerState` and the checkpoints that keep it
  (save, list, load, prune); the run folder made ready for a run; the best model's bookkeeping.
- :mod:`~simcse.runs.card`: the model card.
- :mod:`~simcse.runs.report`: the end of a run (curves, card) and its best model's STS test scores.
"""
