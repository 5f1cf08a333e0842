"""Training and evaluation: everything that makes or measures framemark's models, and nothing the runtime needs.

The procedural world the embedded model learnt (``world``), the prompt-following oracle (``oracle``), the
embedded model's architecture and training (``tiny_wan``, ``train_generator``), the VAE encoder's tuning for the
verifier (``encoder_tuning``), the passive classifier's datasets and training (``passive_dataset``,
``passive_training``) and the attack suite of the benchmarks (``attacks``). ``generate``, ``verify``, ``audit``
and ``serve`` never import this package (tests/test_architecture.py checks it).
"""
