"""Timeouts and policy: the code's value, overridden by the operator's environment variables."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ckptfix.runtime import settings


def test_seconds_and_timedelta_are_accepted(monkeypatch):
    monkeypatch.delenv(settings.BARRIER_TIMEOUT_ENV, raising=False)
    assert settings.barrier_timeout(120) == 120.0
    assert settings.barrier_timeout(2.5) == 2.5
    assert settings.barrier_timeout(timedelta(minutes=2)) == 120.0


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), timedelta(0)])
def test_non_positive_or_infinite_timeouts_are_rejected(bad):
    with pytest.raises(ValueError, match="positive, finite"):
        settings.to_seconds(bad)


@pytest.mark.parametrize("bad", ["120", None, True])
def test_non_numbers_are_rejected(bad):
    with pytest.raises(TypeError, match=r"seconds .* or a datetime\.timedelta"):
        settings.to_seconds(bad)


def test_environment_overrides_the_code(monkeypatch):
    monkeypatch.setenv(settings.BARRIER_TIMEOUT_ENV, "600")
    monkeypatch.setenv(settings.FINAL_TIMEOUT_ENV, " 900.5 ")
    assert settings.barrier_timeout(120) == 600.0
    assert settings.final_timeout(180) == 900.5


@pytest.mark.parametrize("raw", ["soon", "0", "-5"])
def test_bad_environment_values_name_the_variable(monkeypatch, raw):
    monkeypatch.setenv(settings.FINAL_TIMEOUT_ENV, raw)
    with pytest.raises(ValueError, match=f"{settings.FINAL_TIMEOUT_ENV}='{raw}'"):
        settings.final_timeout(180)


@pytest.mark.parametrize(
    ("raw", "policy"), [("", "continue"), ("RAISE", "raise"), (" continue ", "continue")]
)
def test_policy_from_environment(monkeypatch, raw, policy):
    monkeypatch.setenv(settings.SAVE_ERROR_POLICY_ENV, raw)
    assert settings.save_error_policy() == policy


def test_ceiling_and_progress_interval_defaults_and_environment(monkeypatch):
    monkeypatch.delenv(settings.CEILING_ENV, raising=False)
    monkeypatch.delenv(settings.PROGRESS_INTERVAL_ENV, raising=False)
    assert settings.ceiling() == 6 * 3600.0
    assert settings.progress_interval() == 1.0
    monkeypatch.setenv(settings.CEILING_ENV, "86400")
    monkeypatch.setenv(settings.PROGRESS_INTERVAL_ENV, "0")
    assert settings.ceiling() == 86400.0
    assert settings.progress_interval() == 0.0  # off: fixed deadlines


@pytest.mark.parametrize("raw", ["soon", "-1", "inf"])
def test_bad_progress_interval_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv(settings.PROGRESS_INTERVAL_ENV, raw)
    with pytest.raises(ValueError, match=settings.PROGRESS_INTERVAL_ENV):
        settings.progress_interval()
