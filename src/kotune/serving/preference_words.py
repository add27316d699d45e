"""The words the preference reader (kotune.serving.preferences) knows: cue lemmas, nouns that
are never items, people, time words, heads, and the food nouns Kiwi needs told about."""

# Cue lemmas (Kiwi's lemma of the verb or adjective)
LIKE_VERBS = {"좋아하다", "사랑하다", "즐기다"}
DISLIKE_VERBS = {"싫어하다", "질리다"}
EAT_VERBS = {"먹다", "마시다"}
ALLERGY_NOUNS = {"알레르기", "알러지", "알레르기성"}
SYMPTOMS = {"두드러기", "탈", "배탈", "설사", "알레르기", "알러지", "아프다", "체하다", "가렵다"}
# Nouns that are never the food a statement is about: times, meals as occasions, places, people
# and generic heads (`음식` alone says nothing; `매운 음식` does)
NOT_ITEMS = {
    "예전", "옛날", "요즘", "지금", "오늘", "어제", "내일", "주말", "평소", "때", "전", "요새",
    "이제", "아침", "점심", "저녁", "식사", "끼니", "날씨", "기분", "몸", "건강", "가격", "식당", "가게",
    "집", "곳", "데", "분위기", "맛집", "영화", "음악", "노래", "운동", "여행", "책", "게임",
    "공부", "일", "회사", "학교", "시간", "정도", "편", "종류", "제일", "가장", "진짜", "정말",
    "음식", "메뉴", "요리", "것", "거", "맛", "다이어트", "중", "이유", "생각", "추천",
}  # fmt: skip
PERSONS = {
    "친구", "남편", "아내", "엄마", "아빠", "어머니", "아버지", "동생", "언니", "오빠", "누나",
    "형", "아이", "애", "아들", "딸", "남자친구", "여자친구", "남친", "여친", "와이프", "부모님",
    "사람", "가족", "애인", "할머니", "할아버지", "손님", "팀장", "동료",
}  # fmt: skip
# Time words start a phrase of their own: `떡볶이 예전엔` is 떡볶이, then a time
TIME_WORDS = {
    "예전",
    "옛날",
    "요즘",
    "요새",
    "지금",
    "이제",
    "오늘",
    "어제",
    "내일",
    "평소",
    "주말",
}
# `좋아하는 음식은 떡볶이예요`: a cue on one of these heads names the item after the topic
FAVOURITE_HEADS = {"음식", "메뉴", "것", "거", "과일", "채소", "야채", "반찬", "간식", "요리",
                   "술", "음료", "디저트", "빵", "국", "찌개", "과자"}  # fmt: skip
# `좋아하는 편이에요`, `못 먹는 타입이에요`: an adnominal cue that is still the predicate
HEDGE_HEADS = {"편", "타입", "스타일", "쪽", "데"}  # 데: `싫어하는데` comes out as 는/ETM 데/NNB
QUESTION_ENDINGS = {
    "니",
    "냐",
    "나요",
    "습니까",
    "ㅂ니까",
    "을까",
    "ㄹ까",
    "을까요",
    "ㄹ까요",
    "는지",
}
# Short food nouns Kiwi reads as something else out of context (고기 as a pronoun, 가지 as 가다 +
# -지, 날것 as a prefix and 것): added to the caller's Kiwi once, as nouns (context still wins:
# `집에 가지 않을래요` stays 가다)
FOOD_WORDS = ("고기", "가지", "날것", "회", "굴", "게", "파", "김", "무", "팥", "밤", "배")
# What a food is disliked for, not the food: `오이 냄새가 싫어요` is about 오이; `냄새` alone is
# no item
ATTRIBUTE_HEADS = {"냄새", "향", "식감", "맛", "모양", "색", "색깔", "비린내", "향기"}
# A reason, not an item: `냄새 때문에 싫어요`, `종교 때문에 안 먹어요`
REASON_NOUNS = {"때문", "탓"}
INNER_CONNECTIVES = {"어", "아", "여", "지", "게"}  # they join auxiliaries, not clauses
NOUNS = {"NNG", "NNP", "NR", "SL", "SH", "XSN", "SN"}
