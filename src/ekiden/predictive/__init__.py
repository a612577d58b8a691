"""Predictive scoring (R7) and the calibration of rule scores against outcomes (R6).

``model`` is the one tabular learner (logistic regression over standardised numbers and one-hot
categories) used both for contacts' features and for any CSV; ``evaluation`` measures it on
held-out data; ``training`` learns from contacts with known outcomes and scores open leads;
``calibration`` compares scoring rules with the outcomes they should predict.
"""
