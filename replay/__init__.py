"""Historical data and replays: the Elliptic data (``data``), the generator (``synth``), offline network analysis
(``analysis``) and the analyst replay's report (``report``)."""
