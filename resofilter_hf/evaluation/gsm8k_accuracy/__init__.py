"""The `gsm8k_accuracy` evaluate metric (load the folder with `evaluate.load`); its answer rules live in `final_answer`."""
