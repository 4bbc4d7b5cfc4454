"""Training: one resumable loop (``loop``) and its objectives, maximum likelihood
(``likelihood``) and the energy fine-tune (``finetune``); the ``timewarp train`` folder
(``folder``) and what trains, fine-tunes and exports it (``pipeline``); ``torchrun``
(``distributed``).
"""
