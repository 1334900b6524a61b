from atrlib.data.text import normalize_caption, word_counts


def test_normalize_caption():
    assert normalize_caption("A dog barks, then  a CAR passes!") == "a dog barks then a car passes"
    assert normalize_caption("Rain-fall on a tin roof.") == "rain fall on a tin roof"
    assert normalize_caption("  Keep Case ", lower=False) == "Keep Case"


def test_word_counts():
    wc = dict(word_counts(["A dog barks.", "the dog, barking", "Dog!"], stopwords=["a", "the"]))
    assert wc == {"dog": 3, "barks": 1, "barking": 1}
