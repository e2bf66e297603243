/// The most calls in any one-second window of `times` (seconds, any origin, any order):
/// what a rate limit must keep at or below its calls per second.
public func mostCallsInAnySecond(_ times: [Double]) -> Int {
    let sorted = times.sorted()
    var most = 0
    var first = 0
    for last in sorted.indices {
        while sorted[last] - sorted[first] >= 1 { first += 1 }
        most = max(most, last - first + 1)
    }
    return most
}
