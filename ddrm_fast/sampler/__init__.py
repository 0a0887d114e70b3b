"""The DDRM sampler, one concern a file:

- :mod:`.ddrm`: :func:`ddrm_sample` itself (check, build noise, build step, loop or replay);
- :mod:`.checks`: argument checks; :mod:`.noise`: noise sources (:data:`NOISE_SOURCES`), :mod:`.source` their
  interface (:class:`NoiseSource`, :class:`NoiseRequest`); :mod:`.walk`: the timesteps walked and their scalars;
- :mod:`.steps`: the group and spectral step builders over a backend of :mod:`ddrm_fast.backends`;
- :mod:`.posterior`: :func:`posterior`, the mean and standard deviation of K samples, streamed in chunks;
- :mod:`.network`: the network call (compile, autocast, channels_last); :mod:`.graphs`: the CUDA-graph cache.
"""
from ..backends import NAMES as BACKENDS
from .ddrm import ddrm_sample
from .graphs import GRAPHS, clear_graphs
from .network import COMPILE_MODES, compile_mode, network
from .posterior import Posterior, posterior
from .noise import INIT_OFFSET, NOISE_SOURCES, philox_seeds, register_noise
from .source import NoiseRequest, NoiseSource

__all__ = ["ddrm_sample", "posterior", "Posterior", "clear_graphs", "BACKENDS", "COMPILE_MODES", "compile_mode",
           "network", "GRAPHS", "NOISE_SOURCES", "NoiseSource", "NoiseRequest", "register_noise", "philox_seeds",
           "INIT_OFFSET"]
