"""The exception types raised by gan-brevitas for bad user input.

Every message names the problem and how to fix it.
"""


class GanBrevitasError(Exception):
    """Base class of all gan-brevitas errors."""


class ConfigError(GanBrevitasError, ValueError):
    """A configuration value is out of range or inconsistent."""


class CalibrationError(GanBrevitasError, ValueError):
    """Calibration data is empty, non-finite or otherwise unusable."""


class CheckpointError(GanBrevitasError, ValueError):
    """A checkpoint file cannot be read or does not match the model."""


class ConversionError(GanBrevitasError, ValueError):
    """A model cannot be converted to its quantized form."""


class ExportError(GanBrevitasError, ValueError):
    """An export failed or would produce a graph the target rejects."""


class MetricError(GanBrevitasError, ValueError):
    """A metric (FID, qFID, PSNR) cannot be computed from the given images, models or extractor."""


class MissingDependencyError(GanBrevitasError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""


class OutputPathError(GanBrevitasError, ValueError):
    """An output path cannot be written safely (not a regular file, read-only, disk full)."""


class ResourceLimitError(GanBrevitasError, ValueError):
    """A request would need more memory, disk or time than the configured limit allows."""
