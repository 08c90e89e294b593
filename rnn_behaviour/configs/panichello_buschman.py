"""The Panichello & Buschman (2021) monkey task: two items, retro-cued by index (upper/lower).

The network sees each item's colour in its own input channel (the item's position) and, at the
cue, which channel to report; the items' cue features play no part. Target: a constant swap rate
of 0.10 with no guesses (METHOD sec. 9). Judge it by its swap rate (`--mode=evaluate`) and look
inside with the paper's protocol (`--mode=analyse`). The paper trained it as a curriculum:
`experiments/curriculum.py --config=experiments/configs/curriculum_index.py`.
"""

from rnn_behaviour.configs import default
from rnn_behaviour.configs import paper_targets


def get_config():
  config = default.get_config()
  config.task.num_items = 2
  config.task.cueing = 'index'
  config.task.cue_grid = 0
  config.model.trial_noise = -1.0        # sqrt(btilde_T), the paper's preparatory noise.
  config.behaviour.update(paper_targets.target('flat_0.10'))
  return config
