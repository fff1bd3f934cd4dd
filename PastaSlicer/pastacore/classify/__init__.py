"""PASTA classification: encoder features on PASTA's crops, heads, and few-shot training.

* :mod:`.features` — standardise, SLF-normalise, crop (organ 128^3 / lesion 96^3) and pool
  the encoder output into one vector per organ or lesion;
* :mod:`.heads` — PASTA-format heads (``head.0/2/4.*``; report attributes 5+3+2+2+2 logits,
  tumour presence 2) and our own head files, applied to features;
* :mod:`.fewshot` — logistic-regression or MLP heads trained on a user's labelled cases with
  stratified cross-validation (accuracy, ROC AUC);
* :mod:`.csvio` — feature and label CSV files;
* :mod:`.predict` — lesion attributes for a report, from an image and its lesion mask.

Nothing heavy is imported here; torch is imported by the functions that need it.
"""
