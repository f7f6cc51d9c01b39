"""The paper's own numbers that the study sets ours against, typed out once (arXiv 2305.14864 v3).

Table 6: the five layer-removal configurations of a 300M and a 1.1B base model, each continued for
20B tokens of C4; perplexity on C4 and the average accuracy (percent) over six zero-shot tasks.
"""
TABLE6 = {  # configuration: (300M ppl, 300M acc %, 1.1B ppl, 1.1B acc %)
    "max-gap": (23.0, 53.2, 18.1, 54.8),
    "input": (24.5, 52.9, 17.3, 55.1),
    "output": (25.6, 51.6, 22.0, 53.1),
    "middle": (24.0, 52.9, 18.6, 54.7),
    "both": (23.0, 53.2, 18.6, 53.8),
}
#: v3 Table 3: end-to-end generation speed-up of the 50%-depth model over the base model.
GENERATION_SPEEDUP = 1.84


def table6():
    """Table 6 as a DataFrame indexed by configuration."""
    import pandas as pd

    return pd.DataFrame.from_dict(TABLE6, orient="index",
                                  columns=["paper 300M ppl", "paper 300M acc %", "paper 1.1B ppl", "paper 1.1B acc %"])
