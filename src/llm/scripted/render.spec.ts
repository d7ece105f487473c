import { WorkContext } from '../model-provider';
import { renderArgs, renderText } from './render';

const mail: WorkContext = {
  agentId: 'writer',
  kind: 'mailbox_message',
  prompt: 'Sentiment analysis of: feedback.csv',
  from: 'analyzer',
  subject: 'Analysis results',
  body: 'Sentiment analysis of: feedback.csv',
  messageId: 'm-1',
};

const event: WorkContext = {
  agentId: 'monitor',
  kind: 'event',
  prompt: 'alert',
  event: 'alert',
  data: { service: 'db', level: 2 },
};

describe('render', () => {
  describe(renderText.name, () => {
    it('fills the work item’s placeholders', () => {
      expect(
        renderText('{{agentId}} got {{kind}} {{messageId}} from {{from}}: {{subject}} / {{body}}', {
          work: mail,
        }),
      ).toBe(
        'writer got mailbox_message m-1 from analyzer: Analysis results / Sentiment analysis of: feedback.csv',
      );
      expect(renderText('{{ prompt }}!', { work: mail })).toBe('Sentiment analysis of: feedback.csv!');
    });

    it('writes data and other objects as JSON', () => {
      expect(renderText('{{event}}: {{data}}', { work: event })).toBe('alert: {"service":"db","level":2}');
      expect(renderText('{{data.service}} at {{data.level}}', { work: event })).toBe('db at 2');
    });

    it('reads the previous tool result, and paths into it', () => {
      const result = { reply: { from: 'reviewer', body: 'Approved' }, count: 0, ok: false };
      expect(renderText('{{result.reply.body}} by {{result.reply.from}}', { work: mail, result })).toBe(
        'Approved by reviewer',
      );
      expect(renderText('{{result.count}} {{result.ok}}', { work: mail, result })).toBe('0 false');
      expect(renderText('{{result}}', { work: mail, result: { messageId: 'x' } })).toBe('{"messageId":"x"}');
      expect(renderText('[{{result.error}}]', { work: mail, result: { error: 'no such agent' } })).toBe(
        '[no such agent]',
      );
    });

    it('renders a known placeholder with no value as empty', () => {
      expect(renderText('[{{event}}][{{result.a.b}}][{{subject.x}}]', { work: mail })).toBe('[][][]');
    });

    it('leaves unknown placeholders and other braces as written', () => {
      expect(renderText('{{unknown}} {{ whatever.path }} {single} {{}}', { work: mail })).toBe(
        '{{unknown}} {{ whatever.path }} {single} {{}}',
      );
    });
  });

  describe(renderArgs.name, () => {
    it('keeps the type of a value that is exactly one placeholder', () => {
      expect(renderArgs({ data: '{{data}}', level: '{{data.level}}' }, { work: event })).toEqual({
        data: { service: 'db', level: 2 },
        level: 2,
      });
      expect(renderArgs('{{result.ids}}', { work: event, result: { ids: [1, 2] } })).toEqual([1, 2]);
    });

    it('renders every string inside objects and arrays, and leaves other values alone', () => {
      expect(
        renderArgs(
          {
            to: 'user',
            subject: 'Re: {{subject}}',
            tags: ['{{from}}', 'x-{{agentId}}'],
            nested: { body: 'from {{from}}', n: 3, flag: true, none: null },
          },
          { work: mail },
        ),
      ).toEqual({
        to: 'user',
        subject: 'Re: Analysis results',
        tags: ['analyzer', 'x-writer'],
        nested: { body: 'from analyzer', n: 3, flag: true, none: null },
      });
    });

    it('gives an empty string for a lone placeholder with no value, and keeps an unknown one', () => {
      expect(renderArgs({ a: '{{event}}', b: '{{nope}}' }, { work: mail })).toEqual({ a: '', b: '{{nope}}' });
    });
  });
});
