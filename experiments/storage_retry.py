"""Optuna RDB storage that rides out a database restart of seconds instead of ending the sweep.

A PostgreSQL failover or ``pg_ctl restart`` drops every connection for a second or two. Plain
``RDBStorage`` turns that into an exception in whichever call meets it: the coordinator's progress read,
a trial's ``tell`` (the trial then stays RUNNING for ever), or the heartbeat thread, which dies silently
and lets the trial be declared stale and retried while it is still training. Here every storage call
is retried with backoff while the error is a lost or refused connection (``pool_pre_ping`` then hands
out a fresh one), for up to ``RETRY_WINDOW_S``; any other error is raised at once, and so is a
connection error that outlasts the window. A heartbeat that still fails is logged and skipped: the next
beat is a few seconds away and the grace period is minutes.

A write whose commit reached the database but whose answer was lost is retried too; Optuna's writes
are idempotent except ``create_new_trial``, where a duplicate would be an extra trial that never starts
(its worker gets the retried one), counted as failed by the stale-trial check. That is the price of not
losing the sweep.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

import optuna
from optuna.exceptions import StorageInternalError
from sqlalchemy import exc as sqlalchemy_exc

log = logging.getLogger(__name__)

RETRY_WINDOW_S = 60.0
FIRST_DELAY_S = 0.25
MAX_DELAY_S = 5.0
# Storage calls that reach the database: the BaseStorage API, the private ones Optuna's cache layer
# (_CachedStorage, which wraps every RDBStorage a study uses) calls directly, the heartbeat reads, and the
# constructor, which creates or checks the schema (a worker may start while the database restarts).
RETRIED = (
    "__init__", "_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param", "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
    "get_study_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_param",
    "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials", "get_best_trial",
    "check_trial_is_updatable", "_get_stale_trial_ids",
)  # fmt: skip


def is_connection_error(err: BaseException) -> bool:
    """A lost, refused or invalidated connection, as SQLAlchemy reports it directly or inside Optuna's error."""
    cause = err.__cause__ if isinstance(err, StorageInternalError) else err
    if isinstance(cause, sqlalchemy_exc.DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, sqlalchemy_exc.OperationalError | sqlalchemy_exc.InterfaceError)


_active = threading.local()


def _retrying(method):
    """Retry ``method`` on connection errors; only the outermost storage call of a thread retries (the public
    methods call the private ones), so nested calls never multiply the window."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if getattr(_active, "inside", False):
            return method(self, *args, **kwargs)
        _active.inside = True
        try:
            return _with_retries(method, self, *args, **kwargs)
        finally:
            _active.inside = False

    return call


def _with_retries(method, *args, **kwargs):
    deadline = time.monotonic() + RETRY_WINDOW_S
    delay = FIRST_DELAY_S
    while True:
        try:
            return method(*args, **kwargs)
        except (StorageInternalError, sqlalchemy_exc.SQLAlchemyError) as err:
            if not is_connection_error(err) or time.monotonic() + delay > deadline:
                raise
            log.warning("study storage unreachable (%s); retrying in %.2fs", type(err).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose calls survive a database restart (see the module docstring)."""

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self._record_heartbeat_with_retry(trial_id)
        except (StorageInternalError, sqlalchemy_exc.SQLAlchemyError) as err:
            # Optuna's heartbeat thread stops at the first exception; a skipped beat costs nothing.
            log.warning("heartbeat of trial %d not recorded (%s); will try again", trial_id, err)

    @_retrying
    def _record_heartbeat_with_retry(self, trial_id: int) -> None:
        super().record_heartbeat(trial_id)


for _name in RETRIED:
    setattr(RetryingRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))
