//! Dividing a topic's queues among the members of a consumer group.
//!
//! Every member computes its own share from the same two sorted lists (members from the broker,
//! queues from the route) with no coordination, so the function must be exactly RocketMQ's
//! `AllocateMessageQueueAveragely`: a Java consumer and a Tern consumer in one group then agree on
//! who reads what. Contiguous ranges, the first `queues % members` members one queue more.

/// `me`'s share of `queues` among `members`. Both lists must be sorted and free of duplicates
/// (the caller sorts; RocketMQ sorts too). Empty when `me` is not a member.
pub fn allocate_average<Q: Clone>(members: &[String], queues: &[Q], me: &str) -> Vec<Q> {
    let Some(index) = members.iter().position(|m| m == me) else {
        return Vec::new();
    };
    let (n_queues, n_members) = (queues.len(), members.len());
    if n_queues == 0 {
        return Vec::new();
    }
    let rem = n_queues % n_members;
    let average = if n_queues <= n_members {
        1
    } else if rem > 0 && index < rem {
        n_queues / n_members + 1
    } else {
        n_queues / n_members
    };
    let start = if rem > 0 && index < rem {
        index * average
    } else {
        index * average + rem
    };
    let range = average.min(n_queues.saturating_sub(start));
    (0..range)
        .map(|i| queues[(start + i) % n_queues].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn members(n: usize) -> Vec<String> {
        let mut m: Vec<String> = (0..n).map(|i| format!("client-{i:03}")).collect();
        m.sort();
        m
    }

    #[test]
    fn matches_rocketmq_examples() {
        let queues: Vec<i32> = (0..8).collect();
        let m = members(3);
        // 8 queues, 3 members: 3, 3, 2.
        assert_eq!(allocate_average(&m, &queues, &m[0]), [0, 1, 2]);
        assert_eq!(allocate_average(&m, &queues, &m[1]), [3, 4, 5]);
        assert_eq!(allocate_average(&m, &queues, &m[2]), [6, 7]);
        // More members than queues: one each, the rest idle.
        let m = members(5);
        let q = [10, 11, 12];
        assert_eq!(allocate_average(&m, &q, &m[0]), [10]);
        assert_eq!(allocate_average(&m, &q, &m[2]), [12]);
        assert!(allocate_average(&m, &q, &m[3]).is_empty());
        assert!(allocate_average(&m, &q, &m[4]).is_empty());
        assert!(allocate_average(&m, &q, "stranger").is_empty());
        assert!(allocate_average(&m, &[] as &[i32], &m[0]).is_empty());
    }

    proptest! {
        #[test]
        fn every_queue_once_and_balanced(n_members in 1usize..40, n_queues in 0usize..200) {
            let m = members(n_members);
            let queues: Vec<usize> = (0..n_queues).collect();
            let mut owner: BTreeMap<usize, usize> = BTreeMap::new();
            let mut sizes = Vec::new();
            for (i, me) in m.iter().enumerate() {
                let mine = allocate_average(&m, &queues, me);
                sizes.push(mine.len());
                for q in mine {
                    prop_assert!(owner.insert(q, i).is_none(), "queue {} assigned twice", q);
                }
            }
            prop_assert_eq!(owner.len(), n_queues);
            let max = *sizes.iter().max().unwrap();
            let min = *sizes.iter().min().unwrap();
            prop_assert!(max - min <= 1, "sizes {:?}", sizes);
            // Ranges are contiguous and in member order.
            let order: Vec<usize> = owner.values().copied().collect();
            prop_assert!(order.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
