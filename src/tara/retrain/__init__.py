"""Closing the loop: a firing trigger becomes a fine-tuning run that ends as a judged canary.

The controller's leader evaluates the trigger rules on its own interval,
admits at most one run per segment (:mod:`.admission`), and drives each run
through its steps (:mod:`.steps`, pure) by performing their effects
(:mod:`.executor`): prepare the segment's data, train, evaluate against the
segment's stable model, and hand a passing model to a canary rollout scoped
to that segment. Runs and the triggers' bookkeeping live in the shared state
(:mod:`.run_store`, :mod:`.trigger_store`), fenced by the leader lease.
"""
