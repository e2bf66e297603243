import Clocks
import OrderStore
import Reaper
import Synchronization
import TestSupport
import Testing

/// The limiter's rules for a slot reserved in a shared budget, on a manual clock: when the
/// call goes, when a slot is given up, what the first call asks for. The budget here is a
/// script (the real one, on PostgreSQL, is tested in `SharedRateLimitTests`): it answers
/// each reservation after the time the script says, with the wait it says.
@Suite struct SharedSlotRulesTests {
    static let merchant = "1900000109"

    /// A shared budget whose answers come from a script; it records what was asked.
    final class ScriptedBudget: MerchantCallSpacing {
        struct Answer {
            /// How long the answer takes to arrive (the clock is moved by that much).
            var after: Duration = .zero
            var wait: Duration
            var queued: Duration = .zero
        }

        let clock: ManualClock
        private let state: Mutex<(script: [Answer], spacings: [Duration])>

        init(clock: ManualClock, _ script: [Answer]) {
            self.clock = clock
            state = Mutex((script, []))
        }

        var spacingsAsked: [Duration] { state.withLock { $0.spacings } }

        func reserveCall(for mchID: String, spacing: Duration) async throws(StoreError) -> ReservedCall {
            let answer = state.withLock { state in
                state.spacings.append(spacing)
                return state.script.isEmpty ? Answer(wait: .zero) : state.script.removeFirst()
            }
            clock.advance(by: answer.after)
            return ReservedCall(wait: answer.wait, queued: answer.queued, slowDown: nil)
        }

        func recordSlowDown(for mchID: String, to rate: Double) async throws(StoreError) -> SharedSlowDown {
            SharedSlowDown(rate: rate, age: .zero)
        }

        func slowDown(for mchID: String) async throws(StoreError) -> SharedSlowDown? { nil }
    }

    static func limiter(_ budget: ScriptedBudget, rate: Double = 10) -> MerchantRateLimiter {
        let limiter = MerchantRateLimiter(clock: budget.clock, shared: budget)
        limiter.configure([merchant: rate])
        return limiter
    }

    @Test func theCallGoesWhenItsSlotComesCountedFromTheAnswer() async throws {
        let clock = ManualClock()
        let budget = ScriptedBudget(clock: clock, [.init(after: .milliseconds(2), wait: .milliseconds(300))])
        let limiter = Self.limiter(budget)
        let start = clock.now
        let passedAt = try await clock.drive {
            await limiter.acquire(Self.merchant)
            return clock.now
        }
        #expect(passedAt - start == .milliseconds(302), "never before its slot")
        #expect(budget.spacingsAsked.count == 1)
    }

    @Test func theFirstCallAsksForALongerSlotAndTheNextForTheSpacingAlone() async throws {
        let clock = ManualClock()
        let budget = ScriptedBudget(clock: clock, [])
        let limiter = Self.limiter(budget, rate: 10)
        _ = try await clock.drive { await limiter.acquire(Self.merchant) }
        _ = try await clock.drive { await limiter.acquire(Self.merchant) }
        let spacing = Duration.seconds(MerchantRateLimiter.sharedHeadroom / 10)
        #expect(budget.spacingsAsked == [spacing + MerchantRateLimiter.firstCallAllowance, spacing])
    }

    @Test func aSlotMissedByMoreThan50msIsGivenUpForANewOne() async throws {
        let clock = ManualClock()
        let budget = ScriptedBudget(
            clock: clock,
            [
                .init(after: .milliseconds(4), wait: .zero),  // the first call: the quickest answer, 4 ms
                .init(after: .milliseconds(120), wait: .milliseconds(20)),  // a busy host: 118 ms late
                .init(after: .milliseconds(4), wait: .milliseconds(30)),
            ])
        let limiter = Self.limiter(budget)
        _ = try await clock.drive { await limiter.acquire(Self.merchant) }
        let start = clock.now
        let passedAt = try await clock.drive {
            await limiter.acquire(Self.merchant)
            return clock.now
        }
        #expect(budget.spacingsAsked.count == 3, "the late slot was given up, a new one taken")
        #expect(passedAt - start == .milliseconds(120 + 20 + 4 + 30))
    }

    @Test func waitingBehindOtherReservationsIsNotBeingLate() async throws {
        let clock = ManualClock()
        let budget = ScriptedBudget(
            clock: clock,
            [
                .init(after: .milliseconds(4), wait: .zero),
                // 200 ms queued behind other daemons' reservations, then 20 ms to the slot.
                .init(after: .milliseconds(204), wait: .milliseconds(20), queued: .milliseconds(200)),
            ])
        let limiter = Self.limiter(budget)
        _ = try await clock.drive { await limiter.acquire(Self.merchant) }
        _ = try await clock.drive { await limiter.acquire(Self.merchant) }
        #expect(budget.spacingsAsked.count == 2, "the slot was kept")
    }

    @Test func aHostThatIsAlwaysLateGivesUpTenSlotsThenGoes() async throws {
        let clock = ManualClock()
        let late = ScriptedBudget.Answer(after: .milliseconds(100), wait: .zero)
        let budget = ScriptedBudget(
            clock: clock, [.init(after: .milliseconds(1), wait: .zero)] + Array(repeating: late, count: 20))
        let limiter = Self.limiter(budget)
        _ = try await clock.drive { await limiter.acquire(Self.merchant) }
        _ = try await clock.drive { await limiter.acquire(Self.merchant) }
        #expect(budget.spacingsAsked.count == 1 + 10)
    }
}
