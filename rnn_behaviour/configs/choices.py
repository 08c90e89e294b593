"""Names a config field may take whose code lives above the trainer (the analyses), kept here so
that checking a config needs no analysis module."""

ANALYSIS_PROTOCOLS = ('paper', 'design_grid')   # config.analysis.protocol.
PAPER_VARIANTS = ('authors', 'ours')            # config.analysis.paper_variant.
