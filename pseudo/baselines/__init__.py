"""Methods that never train, the floors and peers every trained localizer is compared with:
a length/position prior (:mod:`.prior`), TF-IDF caption matching (:mod:`.tfidf`) and zero-shot
proposal ranking by text-feature similarity (:mod:`.zero_shot`)."""
