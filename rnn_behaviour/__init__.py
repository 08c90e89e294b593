"""rnn_behaviour: RNNs trained by reverse diffusion to sample a subject's whole response
distribution in delayed estimation, swap errors included."""

__version__ = '0.1.0'
