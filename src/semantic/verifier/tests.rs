use super::*;

/// (stored question, new question, expected verdict): paraphrases and typos pass,
/// every trap is refused for its reason.
const CASES: &[(&str, &str, Option<Reason>)] = &[
    // A known false refusal: "open" is one side of a pair, "opening" is not a word of
    // it. Refusing costs one relay call; the reverse would serve a wrong answer.
    (
        "What are your opening hours?",
        "When are you open?",
        Some(Reason::Polarity),
    ),
    // Same meaning: passes.
    (
        "What are your opening hours?",
        "what r ur openng hours",
        None,
    ),
    (
        "How do I reset my password?",
        "How can I reset my password",
        None,
    ),
    (
        "How do I reset my password?",
        "Password reset - how do I do it?",
        None,
    ),
    ("Do you ship to Canada?", "Can you ship to Canada?", None),
    (
        "How long does delivery take?",
        "How long does shipping take?",
        None,
    ),
    ("退货需要多久？", "退货要多长时间？", None),
    ("怎么修改密码", "如何修改密码？", None),
    // Negation.
    (
        "Is the store open on Sunday?",
        "Is the store not open on Sunday?",
        Some(Reason::Negation),
    ),
    (
        "Can I return sale items?",
        "Can't I return sale items?",
        Some(Reason::Negation),
    ),
    ("可以退款吗？", "不可以退款吗？", Some(Reason::Negation)),
    ("有发票吗", "没有发票吗", Some(Reason::Negation)),
    // Polarity.
    (
        "Is the store open on Sunday?",
        "Is the store closed on Sunday?",
        Some(Reason::Polarity),
    ),
    (
        "How do I turn on notifications?",
        "How do I turn off notifications?",
        Some(Reason::Polarity),
    ),
    (
        "How do I enable two-factor login?",
        "How do I disable two-factor login?",
        Some(Reason::Polarity),
    ),
    (
        "How do I upgrade my plan?",
        "How do I downgrade my plan?",
        Some(Reason::Polarity),
    ),
    ("怎么打开通知", "怎么关闭通知", Some(Reason::Polarity)),
    ("如何增加额度", "如何减少额度", Some(Reason::Polarity)),
    // Numbers, dates, amounts, identifiers.
    (
        "Where is order 48213?",
        "Where is order 48231?",
        Some(Reason::Number),
    ),
    (
        "Is a $50 refund possible?",
        "Is a $500 refund possible?",
        Some(Reason::Number),
    ),
    (
        "What happened on 2024-05-01?",
        "What happened on 2024-05-02?",
        Some(Reason::Number),
    ),
    (
        "Error code A1-42 on login",
        "Error code A1-43 on login",
        Some(Reason::Number),
    ),
    (
        "Can I bring 2 bags?",
        "Can I bring 3 bags?",
        Some(Reason::Number),
    ),
    ("能带三个包吗", "能带两个包吗", Some(Reason::Number)),
    ("能带3个包吗", "能带三个包吗", None),
    // Entities and products.
    (
        "Can I pay with PayPal?",
        "Can I pay with Visa?",
        Some(Reason::Entity),
    ),
    (
        "Does the Pro plan include SSO?",
        "Does the Team plan include SSO?",
        Some(Reason::Entity),
    ),
    (
        "Is the \"Basic\" tier free?",
        "Is the \"Premium\" tier free?",
        Some(Reason::Entity),
    ),
    (
        "「会员」有什么权益",
        "「商家」有什么权益",
        Some(Reason::Entity),
    ),
    ("How do I connect Slack?", "How do I connect Slack", None),
    // Scope.
    (
        "Are all items refundable?",
        "Are only some items refundable?",
        Some(Reason::Scope),
    ),
    (
        "What is the limit per day?",
        "What is the limit per month?",
        Some(Reason::Scope),
    ),
    (
        "Is it billed monthly?",
        "Is it billed yearly?",
        Some(Reason::Scope),
    ),
    (
        "所有商品都能退吗",
        "只有部分商品能退吗",
        Some(Reason::Scope),
    ),
    ("每天限额多少", "每月限额多少", Some(Reason::Scope)),
    (
        "Is the limit 10 GB per user?",
        "Is the limit 10 GB per team?",
        Some(Reason::Scope),
    ),
    // Opposites made with a prefix.
    (
        "Is the software compatible with Windows?",
        "Is the software incompatible with Windows?",
        Some(Reason::Polarity),
    ),
    (
        "How do I connect my bank account?",
        "How do I disconnect my bank account?",
        Some(Reason::Polarity),
    ),
    (
        "Is the item available in blue?",
        "Is the item unavailable in blue?",
        Some(Reason::Polarity),
    ),
    (
        "How do I show hidden files?",
        "How do I hide files?",
        Some(Reason::Polarity),
    ),
    // Chinese content: a substituted thing is refused, rewording is not.
    ("怎么重置密码？", "怎么重置路由器？", Some(Reason::Content)),
    ("怎么取消订阅？", "怎么取消订单？", Some(Reason::Content)),
    ("怎么重置密码？", "密码怎么重置？", None),
    ("发货需要多长时间？", "发货要多久？", None),
    ("可以退货吗？", "能退货吗？", None),
    ("退款多久到账？", "退款要多久才能到账？", None),
];

#[test]
fn the_table_of_cases() {
    let mut wrong = Vec::new();
    for (stored, asked, expected) in CASES {
        let got = verify(stored, asked).err();
        if got != *expected {
            wrong.push(format!(
                "{stored:?} vs {asked:?}: expected {expected:?}, got {got:?}"
            ));
        }
        // The verdict does not depend on which side was stored.
        assert_eq!(
            verify(asked, stored).is_ok(),
            got.is_none(),
            "{stored:?} / {asked:?} is not symmetric"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn reasons_have_metric_labels() {
    let labels: Vec<&str> = [
        Reason::Negation,
        Reason::Polarity,
        Reason::Number,
        Reason::Entity,
        Reason::Scope,
        Reason::Content,
    ]
    .iter()
    .map(|r| r.as_str())
    .collect();
    assert_eq!(
        labels,
        [
            "negation", "polarity", "number", "entity", "scope", "content"
        ]
    );
}
