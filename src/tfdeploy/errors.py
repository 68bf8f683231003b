"""The exceptions tfdeploy raises: every one derives from :class:`TFDeployError`."""


class TFDeployError(Exception):
    """Base class of every error tfdeploy raises on purpose."""


class FileFormatError(TFDeployError, ValueError):
    """A model file is truncated, corrupted, foreign, or of an unsupported version."""


class GraphError(TFDeployError, ValueError):
    """A graph is inconsistent: a missing node or function, a cycle, a bad reference."""


class UnsupportedOpError(TFDeployError):
    """One or more op types have no registered kernel."""


class FeedError(TFDeployError, ValueError):
    """An input fed to a model is missing, or of the wrong shape or dtype."""


class ExecutionError(TFDeployError):
    """A kernel failed while a model was evaluated; the message names the node and op."""


class ConversionError(TFDeployError):
    """A TensorFlow object could not be converted."""


class VerificationError(TFDeployError):
    """A model's outputs on its stored check input differ from TensorFlow's beyond tolerance,
    or a model could not be verified (no check data)."""


class ResourceExhaustedError(ExecutionError):
    """An op would make a tensor larger than ``td.setup(max_tensor_bytes=...)`` allows, or ran
    out of memory (TF's ResourceExhaustedError); the message names the node and op."""
