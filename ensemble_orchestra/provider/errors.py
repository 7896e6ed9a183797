"""The provider's errors: what a user of `ensemble` sees when a launch or release fails."""

from __future__ import annotations

from ..errors import EnsembleError

__all__ = [
    "EnvironmentAlreadyBootstrapped",
    "EnvironmentNotBootstrapped",
    "MachinesNotFound",
    "MissingProfile",
    "NoMatchingSystems",
    "PowerError",
    "ProviderError",
    "ReleaseFailed",
    "RollbackFailed",
]


class ProviderError(EnsembleError):
    """Base of the provider's errors; str() is one line naming the system or environment."""


class NoMatchingSystems(ProviderError):
    """No available system matches the constraints (or all were claimed by others meanwhile)."""


class MissingProfile(ProviderError):
    """Cobbler has no ``<series>-<arch>`` profile for the series asked for (setup-server creates them)."""


class PowerError(ProviderError):
    """A system's power could not be set or confirmed; names the system.

    ``retryable`` is per error: a BMC that did not answer may answer later, a rejected password will not.
    """

    def __init__(self, message: str, system: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.system = system
        self.retryable = retryable


class MachinesNotFound(ProviderError):
    def __init__(self, instance_ids: list[str]) -> None:
        super().__init__(f"no machine(s) {', '.join(instance_ids)} in this environment")
        self.instance_ids = instance_ids


class EnvironmentAlreadyBootstrapped(ProviderError):
    pass


class EnvironmentNotBootstrapped(ProviderError):
    pass


class ReleaseFailed(ProviderError):
    """Some machines could not be released; every failure is listed (the others were released)."""

    def __init__(self, failures: dict[str, BaseException]) -> None:
        detail = "; ".join(f"{name}: {error}" for name, error in sorted(failures.items()))
        super().__init__(f"{len(failures)} machine(s) could not be released: {detail}")
        self.failures = failures


class RollbackFailed(ProviderError):
    """A launch failed and so did its rollback: the system stays recorded as owned (destroy-environment retries).

    ``interrupted`` says the launch had been cancelled (Ctrl-C) before its rollback failed.
    """

    def __init__(self, message: str, system: str, *, interrupted: bool = False) -> None:
        super().__init__(message)
        self.system = system
        self.interrupted = interrupted
