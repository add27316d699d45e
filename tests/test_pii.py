"""Korean PII detection: a table per kind of what is found (real shapes, checksums where they
exist) and one of ordinary text that must survive, plus the checksums themselves."""

import pytest

from kotune.config import PII_KINDS
from kotune.masking import Pseudonyms, leaks, mask_text
from kotune.pii import (
    brn_checksum_ok,
    corporate_checksum_ok,
    find_pii,
    luhn_ok,
    may_hold_pii,
    name_forms,
    rrn_checksum_ok,
)

FORMS = name_forms(["민지", "김민지", "준호"])


def masked(text):
    pseudonyms = Pseudonyms()
    pseudonyms.register("민지")
    pseudonyms.register("준호")
    return mask_text(text, FORMS, pseudonyms)[0]


FOUND = {
    "PHONE": [
        ("내 번호 010-2345-6789야", "내 번호 <PHONE>야"),
        ("01023456789로 전화해", "<PHONE>로 전화해"),
        ("010 2345 6789", "<PHONE>"),
        ("010.2345.6789", "<PHONE>"),
        ("+82 10-2345-6789", "<PHONE>"),
        ("+82 10 2345 6789", "<PHONE>"),
        ("집은 02-345-6789", "집은 <PHONE>"),
        ("031)123-4567 사무실", "<PHONE> 사무실"),
        ("070-1234-5678", "<PHONE>"),
        ("0505-123-4567로 전화", "<PHONE>로 전화"),  # 050x: personal and shop relay numbers
        ("안심번호 0507-1234-5678", "안심번호 <PHONE>"),
        ("010–2345–6789", "<PHONE>"),  # en dashes, as pasted from a document
        ("+82-2-345-6789", "<PHONE>"),  # a landline written for abroad
        ("(02) 345-6789", "<PHONE>"),
        ("(010)2345-6789", "<PHONE>"),
        ("82-10-2345-6789", "<PHONE>"),
        ("0313456789 사무실", "<PHONE> 사무실"),  # a landline without separators
        ("번호는010-2345-6789이야", "번호는<PHONE>이야"),
        ("010 - 2345 - 6789", "<PHONE>"),  # spaces around the dashes
        ("02 - 345 - 6789", "<PHONE>"),
        ("０１０－２３４５－６７８９", "<PHONE>"),  # full-width digits and dash
        ("내 번호 ０１０ ２３４５ ６７８９야", "내 번호 <PHONE>야"),
        ("０１０　２３４５　６７８９", "<PHONE>"),  # ideographic spaces
    ],
    "RRN": [
        ("주민번호 900101-1234567", "주민번호 <RRN>"),
        ("900101-1******", "<RRN>"),
        ("외국인 920315-5123456", "외국인 <RRN>"),
        ("9001011234567", "<RRN>"),
        ("주민번호 900101.1234567", "주민번호 <RRN>"),  # written with a dot
        ("900101 - 1234567 맞아?", "<RRN> 맞아?"),
        ("주민등록번호는 123456-1234567입니다", "주민등록번호는 <RRN>입니다"),  # no date: the cue
        ("주민번호 앞자리 900101", "주민번호 앞자리 <RRN>"),
        ("900101-*******", "<RRN>"),
        ("900101–1234567", "<RRN>"),
        ("８００１０１－０１００００７", "<RRN>"),  # full-width
        ("8001010100007", "<RRN>"),  # G 0 (born in the 1800s): the RRN checksum holds
        ("800101-0100007", "<RRN>"),
        ("9001011000014", "<RRN>"),  # RRN checksum fails, the 법인 one holds: G 1–8, an RRN
        ("주민번호 900101-1000014", "주민번호 <RRN>"),
    ],
    "CARD": [
        ("카드 4111 1111 1111 1111", "카드 <CARD>"),
        ("아멕스 3782-822463-10005", "아멕스 <CARD>"),
        ("카드번호: 1234-5678-9012-3456", "카드번호: <CARD>"),  # after its name: any check digit
        ("신용카드: 9430-8212-3456-2390", "신용카드: <CARD>"),
        ("card number 1234 5678 9012 3456", "card number <CARD>"),
    ],
    "ACCOUNT": [
        ("국민은행 123456-01-234567로 보내줘", "국민은행 <ACCOUNT>로 보내줘"),
        ("내 계좌 110-123-456789", "내 계좌 <ACCOUNT>"),
        ("토스로 3333012345678 입금", "토스로 <ACCOUNT> 입금"),
        ("국민 110-12-34567 입금해줘", "국민 <ACCOUNT> 입금해줘"),  # 3-2-5 but no 사업자 checksum
        ("농협 302-1234-5678-91로 보내", "농협 <ACCOUNT>로 보내"),
        ("카카오뱅크 3333-01-2345678", "카카오뱅크 <ACCOUNT>"),
        ("123-456-789012로 보내", "<ACCOUNT>로 보내"),  # no bank named: a bank's grouping
        ("1002-123-456789", "<ACCOUNT>"),
    ],
    "EMAIL": [
        ("minji.kim94@example.com 으로 메일", "<EMAIL> 으로 메일"),
        ("ｍｉｎｊｉ＠ｅｘａｍｐｌｅ．ｃｏｍ", "<EMAIL>"),
    ],
    "URL": [
        ("https://blog.example.com/post/12에서 봤어", "<URL>에서 봤어"),
        ("www.example.org 참고", "<URL> 참고"),
        ("인스타 instagram.com/minji_kim94 팔로우해", "인스타 <URL> 팔로우해"),  # no https://
        ("blog.naver.com/hanbit88 놀러와", "<URL> 놀러와"),
    ],
    "ADDRESS": [
        ("서울 마포구 성미산로12길 34, 101동 1203호", "<ADDRESS>"),
        ("마포구 성미산로 12길 34", "<ADDRESS>"),
        ("성미산로12길 34에서 만나", "<ADDRESS>에서 만나"),
        ("역삼동 178-1번지", "<ADDRESS>"),
        ("101동 1203호로 와", "<ADDRESS>로 와"),
        ("한빛빌 502호", "<ADDRESS>"),
        ("래미안 101동 1203호에 살아", "<ADDRESS>에 살아"),
        ("서울시 중구 ○○로 97 한빛타워 1804호", "<ADDRESS>"),  # the unit after the building
        ("테헤란로 97 한빛타워 1804호로 와", "<ADDRESS>로 와"),
        ("서울 강남구 테헤란로 97 한빛타워 18층", "<ADDRESS>"),
        ("서울시 중구 을지로 3가 12-3", "<ADDRESS>"),  # a lot number after a street section
        ("을지로 3가 12-3번지 앞", "<ADDRESS> 앞"),
        ("ㅇㅇ 502호", "ㅇㅇ <ADDRESS>"),  # a unit on its own is still where someone lives
        ("502호에 살아", "<ADDRESS>에 살아"),
        ("101동 앞에서 봐", "<ADDRESS> 앞에서 봐"),
        ("경기 성남시 분당구 정자일로 88\n한빛빌 502호", "<ADDRESS>\n<ADDRESS>"),
        ("1600 Amphitheatre Parkway, Mountain View, CA 94043", "<ADDRESS>"),
        ("221B Baker Street, London 살았던 데", "<ADDRESS> 살았던 데"),
        ("I live at 350 Fifth Avenue, Apt 4B, New York, NY 10118", "I live at <ADDRESS>"),
        ("우리 집 주소는 성미산로 34야", "우리 집 주소는 <ADDRESS>야"),  # 주소 before a bare road
        ("래미안 101-1203", "<ADDRESS>"),  # 동-호 written with a dash after the building
        ("B동 1203호", "<ADDRESS>"),
        ("서울특별시 강남구 테헤란로 152 한빛센터 20층", "<ADDRESS>"),
        ("경기도 성남시 분당구 판교역로 235, 한빛스퀘어 N동 8층", "<ADDRESS>"),
        ("서울시 관악구 신림동 산 56-1", "<ADDRESS>"),  # a mountain lot (산)
        ("우리 집은 잠실동 22", "우리 집은 <ADDRESS>"),  # 집 just before a bare lot
        ("부산 해운대구 센텀중앙로 79, 센텀 한빛타워 12층 1203호", "<ADDRESS>"),
    ],
    "PERSON": [
        ("@민지 이거 봐", "<PERSON1> 이거 봐"),
        ("민지야 뭐해", "<PERSON1>야 뭐해"),
        ("준호랑 갔어", "<PERSON2>랑 갔어"),
        ("김민지 씨", "<PERSON1> 씨"),
        ("인스타 @minji.kim_94", "인스타 <PERSON3>"),  # a handle with a dot, whole
        ("신한 110-123-456789 예금주 홍길동", "신한 <ACCOUNT> 예금주 <PERSON3>"),
        ("성명: 박서연입니다", "성명: <PERSON3>입니다"),
        ("박서준 씨가 그러는데", "<PERSON3> 씨가 그러는데"),  # a full name before 씨, apart
        ("최유진 님께 전해줘", "<PERSON3> 님께 전해줘"),
        ("카톡 아이디 hanbitkim", "카톡 아이디 <PERSON3>"),  # an account: a person, like @민지
        ("인스타 minji.kim 팔로우해", "인스타 <PERSON3> 팔로우해"),
        ("ID: hong1234", "ID: <PERSON3>"),
        ("＠민지 이거 봐", "<PERSON1> 이거 봐"),
    ],
    "BUSINESS_ID": [
        ("사업자등록번호 220-81-62517", "사업자등록번호 <BUSINESS_ID>"),  # checksum valid
        ("220-81-62517 로 세금계산서", "<BUSINESS_ID> 로 세금계산서"),
        ("사업자번호: 2208162517", "사업자번호: <BUSINESS_ID>"),
        ("사업자등록번호 123-45-67890", "사업자등록번호 <BUSINESS_ID>"),  # a cue: any shape
        ("business no. 124-81-00998", "business no. <BUSINESS_ID>"),
        ("My BRN is 1048656659", "My BRN is <BUSINESS_ID>"),
        ("2208162517로 세금계산서 발행해줘", "<BUSINESS_ID>로 세금계산서 발행해줘"),  # bare
        ("거래처 1248100998 맞지?", "거래처 <BUSINESS_ID> 맞지?"),
        ("２２０－８１－６２５１７", "<BUSINESS_ID>"),
    ],
    "CORPORATE_ID": [
        ("110111-0012346", "<CORPORATE_ID>"),  # checksum valid, not a 주민번호 shape
        ("법인등록번호 110111-0012345", "법인등록번호 <CORPORATE_ID>"),
        ("법인번호 1345110045672", "법인번호 <CORPORATE_ID>"),
        ("1345110045672 맞죠?", "<CORPORATE_ID> 맞죠?"),  # bare, checksum valid
        ("1101110012346", "<CORPORATE_ID>"),  # 11-01-11 and a 0: no RRN checksum, a 법인's
        ("110111-1129497", "<CORPORATE_ID>"),  # a G 1 and a failed RRN checksum: the 법인 one
    ],
    "PASSPORT": [
        ("여권번호 M12345678", "여권번호 <PASSPORT>"),
        ("여권 M789C1234 만료", "여권 <PASSPORT> 만료"),
        ("M789C1234 로 예약했어", "<PASSPORT> 로 예약했어"),  # the 2021 shape: letter 3 letter 4
        ("passport number: S98765432", "passport number: <PASSPORT>"),
        ("PASSPORT NO. M12345678", "PASSPORT NO. <PASSPORT>"),
        ("m456B7890 맞아?", "<PASSPORT> 맞아?"),  # written in lower case
        ("여권번호 Ｍ１２３４５６７８", "여권번호 <PASSPORT>"),  # full-width
        ("Ｍ７８９Ｃ１２３４", "<PASSPORT>"),
        ("항공권 M12345678로 발권했어", "항공권 <PASSPORT>로 발권했어"),  # no cue: a flight
        ("출국할 때 S98765432 맞는지 봐줘", "출국할 때 <PASSPORT> 맞는지 봐줘"),
        ("공항에서 보자. M12345678 챙겨", "공항에서 보자. <PASSPORT> 챙겨"),
    ],
    "DRIVER_LICENSE": [
        ("운전면허 13-22-123456-12", "운전면허 <DRIVER_LICENSE>"),
        ("13-22-123456-12", "<DRIVER_LICENSE>"),
        ("면허번호 서울 21-123456-78", "면허번호 <DRIVER_LICENSE>"),
        ("면허번호는 132212345612", "면허번호는 <DRIVER_LICENSE>"),
        ("28 22 123456 12", "<DRIVER_LICENSE>"),  # spaces for dashes
    ],
    "PLATE": [
        ("내 차 12가 3456", "내 차 <PLATE>"),
        ("123가 4567 차량", "<PLATE> 차량"),
        ("서울 12가 3456", "<PLATE>"),
        ("34러5678이야", "<PLATE>이야"),
        ("렌트카 45허 1234", "렌트카 <PLATE>"),
    ],
    "BIRTHDATE": [
        ("1988년 7월 21일생", "<BIRTHDATE>"),
        ("88년 7월 21일생이야", "<BIRTHDATE>이야"),
        ("1988.07.21생", "<BIRTHDATE>"),
        ("생년월일: 1988.07.21", "생년월일: <BIRTHDATE>"),
        ("생년월일 880721", "생년월일 <BIRTHDATE>"),
        ("생일은 7월 21일", "생일은 <BIRTHDATE>"),
        ("DOB 07/21/1988", "DOB <BIRTHDATE>"),
        ("88.07.21생", "<BIRTHDATE>"),
    ],
    "ZIPCODE": [
        ("우편번호 04524", "우편번호 <ZIPCODE>"),
        ("(우) 04524 서울", "(우) <ZIPCODE> 서울"),
        ("우편번호: 135-080", "우편번호: <ZIPCODE>"),
        ("zip code 94043", "zip code <ZIPCODE>"),
        ("우편번호(04524)", "우편번호(<ZIPCODE>)"),
    ],
    "IP": [
        ("접속 IP 211.234.10.5", "접속 IP <IP>"),
        ("192.168.0.10로 들어가", "<IP>로 들어가"),
    ],
}
assert set(FOUND) == set(PII_KINDS), "every kind has a positive table"


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [(kind, text, out) for kind, rows in FOUND.items() for text, out in rows],
)
def test_pii_is_masked(kind, text, expected):
    assert masked(text) == expected
    assert kind in {s.kind for s in find_pii(text, FORMS)}


# Ordinary text that looks like each kind and is not: every row must come out unchanged.
SURVIVES = {
    "dates and times": [
        "2024-03-02 19:02", "2024.3.2", "2024. 3. 2.", "3월 2일 오후 7시", "2024년 3월",
        "오전 12:15", "3월 2일 생각해봐", "2024년 3월 1일 생방송", "2023-2024 시즌",
    ],
    "money, sizes and counts": [
        "15,000원", "1,234,567원", "270mm", "350kcal", "1.5kg", "체중 58.5kg", "시속 80km",
        "2시간 30분", "100명 중 30%", "점수 95점", "1234567890원", "김치찌개 1인분 약 300~400kcal",
        "12가 3456원", "라면 1, 우동 2, 김밥 3", "12가지 3456개", "30가 1000명",
    ],
    "versions": ["iOS 17.4", "v2.13.0", "v1.2.3.4", "버전 10.0.0.1", "Android 1.2.10.4", "1.2.3.4"],
    "order, tracking and book numbers": [
        "주문번호 123-45-67890", "주문번호 220-81-62517", "송장번호 1234-5678-9012",
        "ISBN 978-89-6848-123-4", "ISBN 9788968481234", "운송장 684512345678",
        "예약번호 110111-0012346", "운송장 6081-2345-6789", "주문번호 2024-0301-123456",
        "2024-0301-1234567", "978-89-6848-123-4",
    ],
    "business phone numbers": ["대표번호 1588-1234", "1577-1000으로 전화", "010", "카드 4111-1111-1111-1112"],
    "places that are no address": [
        "버스로 3 정거장", "을지로 3가 쪽", "학교로 5분", "302호 강의실", "3호선", "2호선 타",
        "제12호", "태풍 11호", "12호점", "우동 2그릇", "마시멜로\n5. 아침", "회의실 201호",
    ],
    "lists and words": [
        "3. 라멘이나 우동\n4. 김밥", "중식 코스 요리\n4. 이탈리안", "https가 뭐야",
        "M사이즈 2개", "Top 10 Drive tips", "여권 사진 찍었어", "생일 축하해", "우편으로 보내",
        "면허 따는 중", "사업자 냈어",
    ],
    "scores, ranges and symbols": [
        "3.5.1 업데이트", "2:1로 이김", "10-20-30 법칙", "5-3으로 졌어", "2024–03–01",
        "(1) 첫째 (2) 둘째", "(010) 이라고 써", "1234-5678", "3-4-5 삼각형", "100-200명",
        "123-456", "2024-1234567", "20-30대", "82학번 10명", "1:1 문의", "월 200-300", "24/7",
        "버전 82.10.1234", "24.03.01 생방송", "가격 19,900원 (정가 25,000원)",
    ],
    "cue words with no number after them": [
        "주민 150000명이 사는 동네", "주민센터 123456", "수령인 이름 적어줘", "예금주 확인해줘",
        "성명서 발표", "카드 할부 3개월", "체크카드로 12,000원 결제", "신용카드 혜택 5%",
        "카드번호 몰라", "주소 알려줄게", "래미안 모델하우스 10-20분", "A동 로비", "지하 1층 B동",
        "부산행 KTX 12호차", "303호 강의실에서", "집 앞 버스로 3 정거장", "집에서 우동 2그릇",
    ],
    "accounts' words with no account after them": [
        "인스타 story 올렸어", "계정 정지됐어", "아이디 비번 알려줘", "paid idea", "video abc123",
        "카톡 pc버전", "ID 카드",
    ],
    "씨 and 님 after no name": [
        "수박 씨 뱉어", "진짜 님 최고", "이제 님이 해", "김 씨 아저씨", "마음씨 좋은 사람",
        "한국 씨름", "선생님께 여쭤봐", "오늘 날씨 좋다",
    ],
    "bare digits without a 사업자/법인 check digit, or said to be something else": [
        "1234567890", "2208162518", "1101110012345", "8001010123456", "2208162517원",
        "1248100998개", "주문번호 2208162517", "운송장 1248100998", "ISBN 8968481234",
        "예약번호 1101110012346", "1700000000", "9912345670",
        "6000000003", "2024030112345", "예약번호 800101-0100007",
    ],
    "a letter and 8 digits: no flight in the message, a date, a product or an order": [
        "M12345678 모델 재고 있어요?", "주문번호 S12345678", "D12345678 부품 교체", "G12345678",
        "품번 R12345678 사이즈 M", "공항 가는 길에 S20240301 결재해줘", "M1234567 항공", "M123456789 공항",
        "SM12345678 비행기", "M12345678-1 공항", "공항 면세점 품번 M12345678", "공항 픽업 주문번호 S12345678",
        "비행기 기내용 캐리어 모델명: S12345678",
    ],
    "full-width text": [
        "１５，０００원", "２０２４－０３－０２ １９：０２", "ｉＯＳ １７．４", "Ｍ사이즈 ２개",
        "３월 ２일 오후 ７시", "ｖ２．１３．０", "주문번호 １２３－４５－６７８９０", "ＯＫ　ㅋㅋ",
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "text"), [(case, text) for case, rows in SURVIVES.items() for text in rows]
)
def test_ordinary_text_survives(case, text):
    assert find_pii(text, FORMS) == [], case


@pytest.mark.parametrize(
    ("digits", "ok"),
    [("4111111111111111", True), ("4111111111111112", False), ("378282246310005", True)],
)
def test_luhn(digits, ok):
    assert luhn_ok(digits) is ok


@pytest.mark.parametrize(
    ("check", "digits", "ok"),
    [
        (brn_checksum_ok, "2208162517", True),
        (brn_checksum_ok, "1248100998", True),
        (brn_checksum_ok, "2208162518", False),
        (brn_checksum_ok, "1234567890", False),
        (brn_checksum_ok, "123456789", False),
        (corporate_checksum_ok, "1101110012346", True),
        (corporate_checksum_ok, "1345110045672", True),
        (corporate_checksum_ok, "1101110012345", False),
        (rrn_checksum_ok, "9001011234568", True),
        (rrn_checksum_ok, "9001011234567", False),
    ],
)
def test_checksums(check, digits, ok):
    assert check(digits) is ok


def test_full_width_is_seen_where_detection_starts():
    """The cheap pre-check the clean stage runs first and the leak scan after masking see the
    full-width forms too; the spans are offsets in the original text."""
    text = "민지 ０１０－２３４５－６７８９"
    assert may_hold_pii("０１０－２３４５－６７８９", None)
    assert [(s.start, s.end, s.kind) for s in find_pii(text, FORMS)] == [
        (0, 2, "PERSON"),
        (3, 16, "PHONE"),
    ]
    assert [s.kind for s in leaks("연락처 ０１０２３４５６７８９", FORMS)] == ["PHONE"]
    # a name typed full-width is the same person
    assert (
        mask_text("Ｊａｙ랑 Jay", name_forms(["Jay"]), Pseudonyms())[0] == "<PERSON1>랑 <PERSON1>"
    )


def test_rrn_checksum_is_confidence_not_shape():
    spans = find_pii("900101-1234568 그리고 900101-1234567")
    assert [s.kind for s in spans] == ["RRN", "RRN"]
    assert sorted(s.confidence for s in spans) == [0.8, 1.0]
