"""POS terminal drivers: the ECR serial link (:mod:`.serial_pos`), the POS simulator process
(:mod:`.simulator`, :mod:`.launcher`) and the terminal's ISO 8583 link to its acquirer (:mod:`.acquirer_link`)."""
