"""Run kinds beyond the classifier (``runs.py`` registers ``classifier`` and ``imported``): one module each,
imported when :data:`fashionrec.runs.RUN_KINDS` is first used. A kind says how to load a run folder's
network from its model.json; loading never imports the objective that trained it (nor torch's
distributed machinery), so ``recommend`` on a CPU server stays light."""
