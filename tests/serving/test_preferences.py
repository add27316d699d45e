"""Preference extraction on a table of Korean sentences written for this test: precision and
recall over (item, polarity) pairs, printed, both ≥ 0.9; and the prompt line."""

from __future__ import annotations

import pytest

from kotune.serving.preferences import Statement, preference_prompt, read_preferences

L, D, C, N = "like", "dislike", "cannot_eat", "neutral"

# (sentence, the preferences it states). Written for the test: likes, dislikes, allergies and
# diets, negations, updates inside a sentence, other people's tastes, questions, wishes, past
# habits, and sentences with food words that state no preference.
TABLE: list[tuple[str, list[tuple[str, str]]]] = [
    # likes
    ("매운 거 좋아해요", [("매운 것", L)]),
    ("저는 떡볶이를 정말 좋아해요", [("떡볶이", L)]),
    ("해산물은 다 잘 먹어요", [("해산물", L)]),
    ("치킨보다 피자가 좋아요", [("피자", L)]),
    ("제가 제일 좋아하는 음식은 떡볶이랑 김밥이에요", [("떡볶이", L), ("김밥", L)]),
    ("달달한 디저트를 좋아하는 편이에요", [("달달한 디저트", L)]),
    ("국물 있는 음식이 좋아요", [("국물 있는 음식", L)]),
    ("닭가슴살 샐러드를 즐겨 먹어요", [("닭가슴살 샐러드", L)]),
    ("회 진짜 좋아함", [("회", L)]),
    ("커피는 매일 마실 정도로 좋아해요", [("커피", L)]),
    ("과일은 뭐든 좋아요", [("과일", L)]),
    ("저 매운 음식 완전 좋아해요", [("매운 음식", L)]),
    ("초밥 좋아해요!", [("초밥", L)]),
    ("매운 거 잘 먹는 편이에요", [("매운 것", L)]),
    ("삼겹살을 너무 사랑해요", [("삼겹살", L)]),
    # dislikes
    ("오이는 싫어요", [("오이", D)]),
    ("오이랑 당근은 싫어요", [("오이", D), ("당근", D)]),
    ("오이, 당근, 가지는 다 싫어요", [("오이", D), ("당근", D), ("가지", D)]),
    ("오이 안 좋아해요", [("오이", D)]),
    ("고수는 별로 안 좋아해", [("고수", D)]),
    ("느끼한 음식은 별로예요", [("느끼한 음식", D)]),
    ("가지는 좋아하지 않아요", [("가지", D)]),
    ("민트초코는 좀 별로더라고요", [("민트초코", D)]),
    ("떡볶이 예전엔 좋아했는데 요즘은 별로예요", [("떡볶이", D)]),
    ("피자는 이제 질렸어요", [("피자", D)]),
    ("비린 건 싫어", [("비린 것", D)]),
    ("단 음식은 별로 안 좋아해요", [("단 음식", D)]),
    ("콩국수는 정말 싫어해요", [("콩국수", D)]),
    ("저는 버섯을 싫어하는데 버섯 없는 메뉴 추천해 줄래요?", [("버섯", D)]),
    ("파는 좋아하지는 않아요", [("파", D)]),
    # cannot eat: allergies, diets, can't
    ("땅콩 알레르기 있어요", [("땅콩", C)]),
    ("새우랑 게 알레르기가 있어요", [("새우", C), ("게", C)]),
    ("복숭아에 알레르기가 있어요", [("복숭아", C)]),
    ("고기 안 먹어요", [("고기", C)]),
    ("매운 건 못 먹어요", [("매운 것", C)]),
    ("술 못 마셔요", [("술", C)]),
    ("우유는 마시면 배탈이 나요", [("우유", C)]),
    ("견과류는 먹으면 두드러기가 나요", [("견과류", C)]),
    ("갑각류 알레르기가 있어서 새우는 못 먹어요", [("갑각류", C), ("새우", C)]),
    ("저는 돼지고기를 먹지 않아요", [("돼지고기", C)]),
    ("밀가루는 먹을 수 없어요", [("밀가루", C)]),
    ("요즘 다이어트 중이라 튀김은 안 먹어요", [("튀김", C)]),
    ("회는 못 먹겠어", [("회", C)]),
    ("맵찔이라 매운 건 잘 못 먹어요", [("매운 것", C)]),
    # several in one message, and a later clause replacing an earlier one
    ("떡볶이는 좋아하는데 순대는 싫어요", [("떡볶이", L), ("순대", D)]),
    ("저는 매운 걸 좋아하지만 오이는 못 먹어요", [("매운 것", L), ("오이", C)]),
    ("고기는 안 먹고 생선은 먹어요", [("고기", C)]),
    ("예전엔 오이 싫어했는데 지금은 잘 먹어요", [("오이", L)]),
    ("오이 좋아했는데 이제는 싫어요", [("오이", D)]),
    ("김치 좋아해요. 아 근데 김치는 요즘 별로예요", [("김치", D)]),
    # negations that clear, and tricky ones that state nothing
    ("오이 싫어하진 않아요", [("오이", N)]),
    ("새우 알레르기는 없어요", [("새우", N)]),
    ("싫어하진 않아요", []),
    ("예전엔 좋아했는데 요즘은 별로", []),
    ("어릴 때는 당근을 싫어했어요", []),
    ("동생은 오이를 싫어해요", []),
    ("남자친구가 매운 걸 좋아해요", []),
    ("매운 거 좋아해요?", []),
    ("뭐 좋아하세요?", []),
    ("오이를 좋아하는 친구에게 줄 요리 추천해줘", []),
    ("아침을 안 먹었어요", []),
    ("오늘은 고기 안 먹을래요", []),
    ("알레르기는 없어요", []),
    # food words, no preference
    ("오늘 점심에 김치찌개 먹었어요", []),
    ("짜장면 칼로리 알려줘", []),
    ("비빔밥 만드는 법 알려줘", []),
    ("날씨가 좋아서 냉면 먹고 싶어", []),
    ("건강에 좋은 음식 추천해줘", []),
    ("피자 먹고 싶다", []),
    ("저녁 메뉴 추천해 주세요", []),
    ("떡볶이 맛집 알려줄래?", []),
    ("김치찌개랑 된장찌개 중에 뭐가 더 맵나요?", []),
    ("어제 먹은 파스타가 정말 좋았어요", []),
    ("이 가게 좋네요", []),
    ("좋아요, 그걸로 할게요", []),
    ("삼계탕 재료 알려줘", []),
]
# Written after the rules above were tuned to the table, and kept whatever they score: the
# test prints their figures apart, as a check that the rules carry beyond the sentences they
# were made on.
HELD_OUT: list[tuple[str, list[tuple[str, str]]]] = [
    ("떡국 좋아합니다", [("떡국", L)]),
    ("저는 피자를 싫어합니다", [("피자", D)]),
    ("해물파전 완전 좋아하는데 오늘 먹을 수 있는 데 있을까?", [("해물파전", L)]),
    ("유제품 알러지가 있어요", [("유제품", C)]),
    ("우리 아이는 당근을 안 먹어요", []),
    ("마라탕은 먹어 본 적 없어요", []),
    ("양파는 익힌 건 괜찮은데 생으로는 못 먹어요", [("양파", C)]),
    ("초콜릿 케이크 너무 좋아요", [("초콜릿 케이크", L)]),
    ("저 채식해서 고기랑 생선은 안 먹어요", [("고기", C), ("생선", C)]),
    ("된장찌개는 별로 안 좋아하고 김치찌개가 좋아요", [("된장찌개", D), ("김치찌개", L)]),
    ("곱창은 냄새 때문에 싫어요", [("곱창", D)]),
    ("내일 회식인데 삼겹살 먹을 것 같아요", []),
    ("돈가스 맛있게 만드는 법 알려주세요", []),
    ("라면 하나 끓여 먹었어요", []),
    ("어떤 음식 좋아해요?", []),
    ("저는 매운 음식을 못 먹는 편이에요", [("매운 음식", C)]),
    ("치즈 들어간 건 다 좋아해요", [("치즈 들어간 것", L)]),
    ("조개류는 먹으면 탈이 나요", [("조개류", C)]),
    ("오이 냄새가 너무 싫어요", [("오이", D)]),
    ("커피는 카페인 때문에 못 마셔요", [("커피", C)]),
    ("빵보다는 밥이 좋아요", [("밥", L)]),
    ("요즘 샐러드에 빠졌어요", [("샐러드", L)]),
    ("햄버거는 가끔 먹어요", []),
    ("닭발 못 먹는 건 아닌데 좋아하지는 않아요", [("닭발", D)]),
    ("새우는 좋아하는데 알레르기가 있어서 못 먹어요", [("새우", C)]),
]

# A second held-out set, written on 2026-12-02 before the phase-2 changes to the rules (its
# figures before and after are in bench/NOTES.md); never used to tune them.
HELD_OUT_2: list[tuple[str, list[tuple[str, str]]]] = [
    ("저는 김치볶음밥을 좋아해요", [("김치볶음밥", L)]),
    ("짬뽕 엄청 좋아해", [("짬뽕", L)]),
    ("달콤한 거 좋아합니다", [("달콤한 것", L)]),
    ("연어를 제일 좋아해요", [("연어", L)]),
    ("순두부찌개가 너무 좋아요", [("순두부찌개", L)]),
    ("매운 음식 잘 먹어요", [("매운 음식", L)]),
    ("고기 진짜 좋아하는 편이에요", [("고기", L)]),
    ("아이스크림 완전 좋아함", [("아이스크림", L)]),
    ("가지 싫어해요", [("가지", D)]),
    ("당근은 정말 싫어", [("당근", D)]),
    ("느끼한 건 별로 안 좋아해요", [("느끼한 것", D)]),
    ("피망은 좋아하지 않습니다", [("피망", D)]),
    ("셀러리는 별로예요", [("셀러리", D)]),
    ("고수 싫어요", [("고수", D)]),
    ("순대는 안 좋아해요", [("순대", D)]),
    ("양고기는 별로 안 좋아해", [("양고기", D)]),
    ("우유 알레르기가 있어요", [("우유", C)]),
    ("계란 알러지 있어요", [("계란", C)]),
    ("저는 비건이라 고기를 안 먹어요", [("고기", C)]),
    ("채식주의자라서 고기는 못 먹어요", [("고기", C)]),
    ("매운 거 잘 못 먹어요", [("매운 것", C)]),
    ("해산물은 못 먹어요", [("해산물", C)]),
    ("술은 안 마셔요", [("술", C)]),
    ("밀가루 먹으면 배가 아파요", [("밀가루", C)]),
    ("돼지고기는 종교 때문에 안 먹어요", [("돼지고기", C)]),
    ("땅콩이랑 호두 알레르기 있어요", [("땅콩", C), ("호두", C)]),
    ("날것은 못 먹어요", [("날것", C)]),
    ("라면은 좋아하는데 짜장면은 싫어요", [("라면", L), ("짜장면", D)]),
    ("매운 건 좋아하지만 오이는 알레르기가 있어요", [("매운 것", L), ("오이", C)]),
    ("예전엔 회를 못 먹었는데 지금은 좋아해요", [("회", L)]),
    ("당근 싫어하지 않아요", [("당근", N)]),
    ("우유 알레르기 없어요", [("우유", N)]),
    ("언니는 고기를 안 먹어요", []),
    ("아빠가 회를 좋아하세요", []),
    ("돈가스 좋아하세요?", []),
    ("삼겹살 먹으러 갈까?", []),
    ("오늘은 비빔냉면이 먹고 싶어요", []),
    ("김치찌개 끓이는 법 알려줘", []),
    ("어제 치킨 시켜 먹었어요", []),
    ("배고픈데 뭐 먹지?", []),
    ("다이어트 식단 짜 줘", []),
    ("점심은 안 먹었어요", []),
]

# A third, written when the test had shown HELD_OUT_2's misses on its first run (so that one is
# seen): also before any rule change, scored then by figures only (bench/NOTES.md).
HELD_OUT_3: list[tuple[str, list[tuple[str, str]]]] = [
    ("저는 잡채를 좋아해요", [("잡채", L)]),
    ("불고기 정말 좋아합니다", [("불고기", L)]),
    ("새콤한 음식을 좋아하는 편이에요", [("새콤한 음식", L)]),
    ("팥은 별로 안 좋아해요", [("팥", D)]),
    ("청국장은 냄새 때문에 싫어요", [("청국장", D)]),
    ("굴은 싫어합니다", [("굴", D)]),
    ("브로콜리 별로야", [("브로콜리", D)]),
    ("메밀 알레르기가 있어요", [("메밀", C)]),
    ("키위 알러지가 있어서 못 먹어요", [("키위", C)]),
    ("저 채식해요. 소고기는 안 먹어요", [("소고기", C)]),
    ("유당불내증이라 우유는 못 마셔요", [("우유", C)]),
    ("매운 걸 잘 못 먹어서요", [("매운 것", C)]),
    ("조개는 먹으면 두드러기가 나요", [("조개", C)]),
    ("생굴은 못 먹겠어요", [("생굴", C)]),
    ("김밥은 좋은데 유부초밥은 별로예요", [("김밥", L), ("유부초밥", D)]),
    ("전에는 가지를 싫어했는데 지금은 좋아해요", [("가지", L)]),
    ("버섯 싫어하지 않아요", [("버섯", N)]),
    ("견과류 알레르기는 없어요", [("견과류", N)]),
    ("남편은 매운 걸 못 먹어요", []),
    ("엄마가 잡채를 좋아하세요", []),
    ("냉면 좋아하세요?", []),
    ("떡볶이 먹을까?", []),
    ("파스타 먹고 싶다", []),
    ("된장찌개 레시피 알려줘", []),
    ("저녁은 안 먹었어요", []),
]


@pytest.fixture(scope="module")
def kiwi():
    from kotune.serving.preferences import new_kiwi

    return new_kiwi()


def test_table_has_enough_sentences_of_each_kind():
    assert len(TABLE) >= 60
    kinds = {p for _, expected in TABLE for _, p in expected}
    assert kinds == {L, D, C, N}
    assert sum(1 for _, expected in TABLE if not expected) >= 20


def score(kiwi, table):
    """Precision and recall over (item, polarity) pairs, and the sentences read wrong."""
    true_positive = predicted = expected_total = 0
    misses = []
    for sentence, expected in table:
        got = {(s.item, s.polarity) for s in read_preferences(sentence, kiwi)}
        want = set(expected)
        true_positive += len(got & want)
        predicted += len(got)
        expected_total += len(want)
        if got != want:
            misses.append(f"{sentence}: got {sorted(got)}, want {sorted(want)}")
    return true_positive / predicted, true_positive / expected_total, expected_total, misses


def test_precision_and_recall_on_the_table(kiwi, capsys):
    with capsys.disabled():
        tables = (
            ("tuned on", TABLE),
            ("held out", HELD_OUT),
            ("held out 2", HELD_OUT_2),
            ("held out 3", HELD_OUT_3),
            ("all", TABLE + HELD_OUT + HELD_OUT_2 + HELD_OUT_3),
        )
        for name, table in tables:
            precision, recall, pairs, misses = score(kiwi, table)
            print(
                f"\npreferences ({name}): {len(table)} sentences, {pairs} expected pairs: "
                f"precision {precision:.3f}, recall {recall:.3f}"
            )
            for miss in misses if name != "all" else []:
                print("  miss:", miss)
    precision, recall, _, misses = score(kiwi, TABLE + HELD_OUT + HELD_OUT_2 + HELD_OUT_3)
    assert precision >= 0.9 and recall >= 0.9, misses
    precision, recall, _, misses = score(kiwi, HELD_OUT + HELD_OUT_2 + HELD_OUT_3)
    assert precision >= 0.9 and recall >= 0.9, misses  # beyond the sentences tuned on


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("오이 좋아했는데 이제는 싫어요", [Statement("오이", D)]),
        ("떡볶이는 좋아하는데 순대는 싫어요", [Statement("떡볶이", L), Statement("순대", D)]),
        ("매운 거 좋아해요?", []),
        ("요즘 마라탕에 푹 빠졌어요", [Statement("마라탕", L)]),
        ("우리 엄마는 매운 거 좋아하세요", []),
        ("오이 냄새가 싫어요", [Statement("오이", D)]),
        ("돼지고기는 종교 때문에 안 먹어요", [Statement("돼지고기", C)]),
        # markup in a message: its tag names are not items (they were: `b`, `i`, `br`)
        ("<b>오이</b>는 싫어요", [Statement("오이", D)]),
        ("<i>매운 거</i> 좋아해요 <script>alert(1)</script>", [Statement("매운 것", L)]),
        ("땅콩 <br> 알레르기 있어요", [Statement("땅콩", C)]),
    ],
)
def test_statements_come_in_order_with_the_latest_last(kiwi, sentence, expected):
    assert read_preferences(sentence, kiwi) == expected


def test_prompt_line_groups_by_polarity():
    prefs = [("오이", D), ("매운 것", L), ("땅콩", C), ("떡볶이", L)]
    assert (
        preference_prompt(prefs)
        == "사용자 선호: 좋아함 — 매운 것, 떡볶이; 싫어함 — 오이; 못 먹음 — 땅콩"
    )
    assert preference_prompt([]) == ""
