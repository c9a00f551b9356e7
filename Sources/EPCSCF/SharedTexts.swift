/// Texts and lists that many tokens or flows repeat (a WAF's `wwsf` and `aud`, an S-CSCF's
/// Service-Route), one copy each: a value seen before is handed back as that first copy (a
/// String or Array shares its storage when copied), so an idle flow does not hold its own.
/// Bounded: past `limit` distinct values, new ones are kept as they came.
struct SharedTexts {
    var texts: Set<String> = []
    var lists: Set<[String]> = []
    let limit = 1_024

    mutating func text(_ value: String) -> String {
        if let known = texts.firstIndex(of: value) { return texts[known] }
        if texts.count < limit { texts.insert(value) }
        return value
    }

    mutating func list(_ value: [String]) -> [String] {
        if let known = lists.firstIndex(of: value) { return lists[known] }
        if lists.count < limit { lists.insert(value) }
        return value
    }
}
