"""Score what lands in an inbox (``variants schedule --score-inbox DIR --model NAME``)."""

from pathlib import Path

from prefect import flow
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flows.score import score
from keras_variants.config.pipeline import PipelineConfig
from keras_variants.errors import VariantsError
from keras_variants.operations.inbox import not_scored, reason_for, scored_folder
from keras_variants.scoring.request import ScoringRequest
from tasks.inbox import announce_drift, fail, finish, take_waiting


class InboxResult(BaseModel):
    scored: dict[str, Path]  # input name -> its scoring files
    failed: dict[str, str]  # input name -> why


class InboxError(VariantsError):
    """Some inputs of a scoring run were refused (they are in failed/, each with its reason)."""


@flow(name="score-inbox")
def score_inbox(config: PipelineConfig, inbox: Path, model: str) -> InboxResult:
    """Take every file waiting in ``inbox`` and score each with ``model``'s champion through
    the ``score`` flow; one refused input does not stop the others, and fails the run at the
    end (so that --notify says so)."""
    scored: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for entry in take_waiting(inbox):
        request = ScoringRequest(input=entry, model=model, out=scored_folder(inbox, entry))
        state = score(config, request, return_state=True)
        result = state.result(raise_on_failure=False)
        if not state.is_completed():
            failed[entry.name] = reason_for(result, entry)
            fail(inbox, entry, failed[entry.name])
            continue
        finish(inbox, entry, result)
        scored[entry.name] = result.folder
        if result.drift_detected:
            announce_drift(config, entry, result)
    if failed:
        # Said here as well: a quiet console drops the failure's own record (our error).
        get_run_logger().error(not_scored(failed, len(scored)))
        raise InboxError(not_scored(failed, len(scored)))
    return InboxResult(scored=scored, failed=failed)
