"""Neural-network kernels: activations, normalization, convolution, pooling, quantization,
and the fused kernels the compiler builds."""

from tfdeploy.kernels.nn import (  # noqa: F401
    conv,
    core,
    fused,
    norm,
    pool,
    quant,
    rnn,
    transformer,
)
