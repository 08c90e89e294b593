"""Looking inside trained networks (METHOD sec. 8): pure functions over recorded trajectories.

Trajectories are time-major `(T, K, S, n)`: time, displays, samples, units.

  displays_grid  the designed grid of two-item displays and their report-bin labels
  planes         plane alignment of the items' report-feature representations
  decoding       swap decoding ("setting up for failure") and cross-temporal decoding
  dynamics       PCA; fixed and slow points with their Jacobian spectra
  plots          matplotlib figures of all of the above
"""
