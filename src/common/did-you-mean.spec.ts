import { closestName, editDistance } from './did-you-mean';

describe(closestName.name, () => {
  const methods = [
    'async.getAgentStates',
    'async.getTask',
    'async.sendTask',
    'session.start',
    'startSession',
  ];

  it('suggests the method a typo was meant to be', () => {
    expect(closestName('async.getAgentState', methods)).toBe('async.getAgentStates');
    expect(closestName('async.sendtask', methods)).toBe('async.sendTask');
    expect(closestName('session.strat', methods)).toBe('session.start');
  });

  it('suggests nothing when no name is close', () => {
    expect(closestName('async.nope', methods)).toBeUndefined();
    expect(closestName('x', methods)).toBeUndefined();
  });
});

describe(editDistance.name, () => {
  it('counts inserts, deletes and substitutions', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('same', 'same')).toBe(0);
  });
});
