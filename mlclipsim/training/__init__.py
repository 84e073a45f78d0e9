"""Training: everything that fits weights, above the models it trains.

- codecs for machines: the multi-term rate-distortion loss (:mod:`~mlclipsim.training.codec_loss`)
  over named distortion terms (:mod:`~mlclipsim.training.distortion_terms`), the LightningModule
  (:mod:`~mlclipsim.training.codec_module`), the DataModule (:mod:`~mlclipsim.training.codec_data`),
  the LightningCLI entry point (:mod:`~mlclipsim.training.train_codec`), lambda calibration and
  step timing;
- RA-MIQA: cached features (:mod:`~mlclipsim.training.ra_miqa_data`), the LightningModule
  (:mod:`~mlclipsim.training.ra_miqa_module`) and its entry point (:mod:`~mlclipsim.training.train_ra_miqa`);
- ML-CLIPSim's layer weights: the Bradley-Terry fit (:mod:`~mlclipsim.training.layer_weights_fit`)
  and the job that runs it on a dataset (:mod:`~mlclipsim.training.calibrate_layer_weights`).
"""
